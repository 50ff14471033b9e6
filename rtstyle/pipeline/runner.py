"""The stream runner: source -> queue -> batcher/stylizer -> queue -> sink.

Two modes. Lossless (files): queues block, so a slow stage slows the others and no frame is
lost. Live (cameras): the capture queue keeps only the newest frames and counts what it throws
away, so latency stays bounded when the stylizer is slower than the source.

The sink runs in the calling thread (GUI toolkits want the main thread); source and stylizer
run in their own. The stylize stage keeps up to `pending.IN_FLIGHT` batches submitted to the
engine (or one per parallel CPU frame, where there are more), so on a GPU the next batch is
uploaded and computed while the last one downloads; in live mode it hands a batch on as soon as
it is done, and starts a newly captured frame meanwhile rather than wait for the oldest, so overlap
never adds latency. The temporal smoother is the stream's own and runs on the engine's device between the
engine and the download; the face stage (`faces`, pipeline/faces.py) runs on the host pictures after
it, so it works with every engine. Any failure stops every stage and is re-raised here.

While running in the main thread, SIGINT, SIGTERM and SIGHUP do not kill the process mid-write:
the first one drains (everything already read is still written, copied streams are cut where the
video ends, and the file is closed properly), a second one aborts. SIGTERM is what `timeout`,
systemd, Docker and job schedulers send, so it gets the same care as Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import BackendError, PipelineError, RtstyleError
from ..io.sinks import Sink
from ..io.sources import Frame, Source
from ..stylizers.base import IN_FLIGHT, PendingBatch, Stylizer
from .metrics import Metrics
from .scale import check_scale, enlarge, fitted_scale, shrink, working_size
from .stages import END, Stages, Stopped

log = logging.getLogger(__name__)

FrameFunction = Callable[[list[np.ndarray]], list[np.ndarray]]  # a plain function stylizes too
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class StreamConfig:
    batch: int = 4
    queue_frames: int = 16
    live: bool = False
    batch_wait_ms: float = 4.0  # live mode: how long the batcher waits to fill a batch
    live_queue_frames: int = 1  # live mode: frames the capture queue keeps (newest)
    scale: float = 1.0  # stylize at this fraction of the frame's size, then scale back (pipeline/scale.py)
    fit_scale: bool = False  # live: time the stylizer at the start and pick the scale it keeps up at

    def __post_init__(self) -> None:
        check_scale(self.scale)


@dataclass
class RunResult:
    metrics: dict
    interrupted: bool  # drained early (a signal, or the viewer quit)
    signal: int | None = None  # the signal that drained it, if one did


class Aborted(KeyboardInterrupt):
    """A second Ctrl-C: stop without finishing."""


def run_stream(source: Source, stylize: Stylizer | FrameFunction, sink: Sink, config: StreamConfig,
               progress: Progress | None = None, quit_event: threading.Event | None = None,
               metrics: Metrics | None = None, smoother=None, faces=None) -> RunResult:
    stages = Stages()
    scale = config.scale
    if config.fit_scale and source.size[0] > 0 and source.fps:
        scale, full_ms = fitted_scale(stylize, *source.size, source.fps)
        log.info("scale %.2f: a full-size frame took %.1f ms of the source's %.1f", scale, full_ms,
                 1000 / source.fps)
    warm_up = getattr(stylize, "warm_up", None)
    if warm_up is not None and source.size[0] > 0:
        width, height = working_size(*source.size, scale)
        with engine_failure("warm-up"):
            warm_up(config.batch, height, width)  # compile and capture before the clock
    metrics = metrics or Metrics()
    metrics.scale = scale
    metrics.start()
    captured = stages.queue(config.live_queue_frames if config.live else config.queue_frames)
    stylized = stages.queue(max(2, config.batch) if config.live else config.queue_frames)
    quit_event = quit_event or threading.Event()

    def capture() -> None:
        try:
            produced = time.perf_counter()
            for frame in source.frames():
                metrics.stage("capture", time.perf_counter() - produced)  # decoding, for files
                if stages.drain.is_set() or quit_event.is_set():
                    break
                if config.live:
                    _put_newest(captured, frame, metrics)
                else:
                    stages.put(captured, frame)
                produced = time.perf_counter()
        finally:
            source.close()
        stages.put(captured, END)

    submit = getattr(stylize, "submit", None)
    before_batch = getattr(stylize, "before_batch", None)  # a style schedule: told each batch's time
    # `smoother`: made by the stylizer (`make_smoother`), so its arrays are the stylizer's own.
    after = None if smoother is None or smoother.passthrough else smoother.apply_batch
    # A file sink takes yuv420p straight from the GPU; frames to be enlarged, or to have their faces
    # blended back (`faces`: pipeline/faces.py's stage, on the host), stay RGB (sinks take both).
    layout = getattr(sink, "layout", "rgb24") if scale >= 1.0 and faces is None else "rgb24"

    def start(images: list[np.ndarray]) -> PendingBatch:
        images = shrink(images, scale)
        if submit is not None:
            return submit(images, after, layout)
        if after is not None:
            raise TypeError("a smoother needs a stylizer with submit()")
        return PendingBatch(stylize(images), len(images))

    most_in_flight = max(IN_FLIGHT, getattr(stylize, "parallel_frames", 1))  # parallel CPU frames: one each

    def stylize_stage() -> None:
        in_flight: deque[tuple[list[Frame], PendingBatch, float]] = deque()

        def finish_oldest() -> None:
            batch, pending, started = in_flight.popleft()
            waited = time.perf_counter()
            images = pending.result()
            if scale < 1.0:
                images = enlarge(images, [frame.image for frame in batch])
            now = time.perf_counter()
            metrics.stage("stylize", now - started, len(batch))  # submitted -> pixels on the host
            metrics.stage("stylize_wait", now - waited, len(batch))  # of which the host sat waiting
            if faces is not None:
                images = faces.apply_batch([frame.image for frame in batch], images)
                metrics.stage("faces", time.perf_counter() - now, len(batch))
            for frame, image in zip(batch, images):
                stages.put(stylized, (frame, image))

        done = False
        while not done:
            # Hand on a batch that is already done (a CPU stylizer's always is: it computes in submit),
            # so keeping batches in flight never holds a finished frame back by one frame's time; live,
            # also hand on rather than wait for the next frame to arrive, but start that frame at
            # once if it comes first (a GPU, or parallel CPU frames, can take it while the oldest runs).
            while in_flight and (len(in_flight) >= most_in_flight or in_flight[0][1].done()
                                 or (config.live and _first_of(in_flight[0][1], captured, stages))):
                finish_oldest()
            batch, done = _collect(stages, captured, config)
            if batch:
                started = time.perf_counter()
                if before_batch is not None:
                    before_batch(batch[0].seconds)
                in_flight.append((batch, start([f.image for f in batch]), started))
                metrics.stage("stylize_submit", time.perf_counter() - started, len(batch))
        while in_flight:
            finish_oldest()
        stages.put(stylized, END)

    stages.spawn("capture", capture)
    stages.spawn("stylize", stylize_stage)
    with _DrainOnSignals(stages) as signals:
        try:
            _sink_loop(stages, stylized, sink, metrics, progress, source.expected_frames, quit_event)
        except BaseException as exc:
            stages.fail("sink", exc)
    if source.live:  # unblock a camera waiting for its next frame; files stop at their next queue call
        source.close()
    try:
        stages.join()
    except BaseException as exc:
        sink.abort()
        if isinstance(exc, BackendError):  # the engine failed on this input (outside a TensorRT profile, ...):
            raise PipelineError(f"{stages.failed_stage} stage failed: {exc}") from exc  # a failure, not usage
        if isinstance(exc, RtstyleError | KeyboardInterrupt):
            raise
        raise PipelineError(f"{stages.failed_stage} stage failed: {exc.__class__.__name__}: {exc}") from exc
    finally:
        metrics.finish()
    interrupted = stages.drain.is_set() or quit_event.is_set()
    if interrupted:
        sink.end_early()
    sink.close()
    return RunResult(metrics.summary(), interrupted, signals.received)


@contextlib.contextmanager
def engine_failure(stage: str) -> Iterator[None]:
    """An engine's BackendError on this input ends the run as a failure (exit 1), not as a usage error."""
    try:
        yield
    except BackendError as exc:
        raise PipelineError(f"{stage} stage failed: {exc}") from exc


def _first_of(pending: PendingBatch, captured: queue.Queue, stages: Stages, poll: float = 0.001) -> bool:
    """Wait until `pending` is done (True) or a frame is captured (False), whichever comes first."""
    while captured.empty() and not stages.stop.is_set():
        if pending.done():
            return True
        time.sleep(poll)
    return pending.done()


def _put_newest(q: queue.Queue, frame: Frame, metrics: Metrics) -> None:
    """Live mode: make room by throwing away the oldest waiting frame."""
    while True:
        try:
            q.put_nowait(frame)
            return
        except queue.Full:
            try:
                q.get_nowait()
                metrics.dropped()
            except queue.Empty:
                pass


def _collect(stages: Stages, q: queue.Queue, config: StreamConfig) -> tuple[list[Frame], bool]:
    """Up to `batch` frames. Lossless: wait for a full batch. Live: wait at most batch_wait_ms."""
    first = stages.get(q)
    if first is END:
        return [], True
    batch = [first]
    deadline = time.perf_counter() + config.batch_wait_ms / 1000
    while len(batch) < config.batch:
        if config.live:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                item = q.get(timeout=remaining)
            except queue.Empty:
                break
        else:
            item = stages.get(q)
        if item is END:
            return batch, True
        batch.append(item)
    return batch, False


def _sink_loop(stages: Stages, q: queue.Queue, sink: Sink, metrics: Metrics, progress: Progress | None,
               expected: int, quit_event: threading.Event) -> None:
    while True:
        try:
            item = stages.get(q)
        except Stopped:
            return
        if item is END:
            return
        frame, image = item
        start = time.perf_counter()
        sink.write(frame, image)
        metrics.stage("sink", time.perf_counter() - start)
        metrics.output(frame.captured)
        if progress:
            progress(metrics.frames, expected)
        if quit_event.is_set():
            stages.drain.set()


class _DrainOnSignals:
    """In the main thread: the first SIGINT, SIGTERM or SIGHUP sets `drain`; a second one stops everything."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self, stages: Stages):
        self.stages = stages
        self.previous: dict[int, object] = {}
        self.received: int | None = None

    def __enter__(self) -> _DrainOnSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.stages.drain.is_set():
            self.stages.fail("main", Aborted(f"aborted by a second {signal.Signals(signum).name}"))
            return
        self.received = signum
        how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.warning("%s: finishing the frames already read (again to abort)", how)
        self.stages.drain.set()

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
