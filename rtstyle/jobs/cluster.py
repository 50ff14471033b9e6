"""Batches and long videos on Ray: rtstyle stays a library that Ray calls, and Ray does the scheduling.

* Workers are Ray actors (`StylizeWorker`) that build the stylizer once each, in `__init__`, and
  then convert whole files (`batch.run_job`) or segments of one long video
  (`segments.stylize_segment`). On CUDA each worker asks Ray for one GPU; on CPUs for `--threads`
  CPUs (1 by default), so a node runs as many workers as it has cores.
* A worker that dies (killed, out of memory, its node lost) is restarted by Ray, which reloads the
  stylizer, and the call it had is retried by Ray (`max_restarts`, `max_task_retries`). A file that
  kills its worker on every try is reported as failed after the last retry, and the batch goes on.
* Progress goes from the workers to a small actor (`ProgressBoard`) that the driver polls for its
  one progress bar, the pattern of Ray's own progress-bar example.
* Inputs, outputs and parts are read and written by the workers themselves, so they must be on a
  path every node sees (shared storage, mounted at the same place); paths are made absolute here.

Nothing here imports Ray at module level: it is an optional extra (`rtstyle[cluster]`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import ConvertConfig, EngineConfig
from ..errors import BackendError, PipelineError, RtstyleError
from .batch import BatchResult, Job, JobResult, job_totals, run_job
from .convert import ConvertResult, check_paths, claim_output
from .parts import parts_folder
from .segments import (
    Segment,
    check_segmentable,
    frame_size,
    join_into,
    part_path,
    plan_segments,
    preroll_frames,
    segment_config,
    stylize_segment,
)

log = logging.getLogger(__name__)
REPORT_SECONDS = 0.25  # how often a worker tells the board its frames (the driver polls as often)


@dataclass(frozen=True)
class RayConfig:
    """Where and how to run on Ray."""

    address: str | None = None  # None: a new local Ray on this machine; "auto": the cluster `ray start` made
    workers: int | None = None  # None: one per GPU on CUDA, else cluster CPUs // CPUs per worker
    max_task_retries: int = 2  # tries after the first for a call whose worker died
    num_cpus: int | None = None  # CPUs of a new local Ray (None: all of this machine's)
    log_to_driver: bool = True  # workers' log lines (and Ray's) printed here; off for --json, whose stdout is JSON


@contextlib.contextmanager
def ray_session(config: RayConfig) -> Iterator[object]:
    """The `ray` module, connected: to a running Ray if this process has one, else `ray.init(address)`.

    Disconnects at the end only what it connected.
    """
    if importlib.util.find_spec("ray") is None:
        raise BackendError("--ray needs Ray: pip install 'rtstyle[cluster]'")
    import ray

    if ray.is_initialized():
        yield ray
        return
    _check_reachable(config.address)
    try:
        ray.init(address=config.address, num_cpus=config.num_cpus if config.address is None else None,
                 logging_level=logging.WARNING, include_dashboard=False if config.address is None else None,
                 log_to_driver=config.log_to_driver)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BackendError(f"cannot reach Ray at {config.address or 'a new local instance'}: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str | None) -> None:
    """A HOST:PORT that nothing answers on fails here in seconds; ray.init would retry for minutes."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise BackendError(f"--ray {address}: give auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise BackendError(f"cannot reach Ray at {address} ({exc.strerror or exc}); is `ray start --head` "
                           "running there?") from None


class ProgressBoard:
    """A Ray actor: frames done per call, and how many times each call was started (retries show as more)."""

    def __init__(self):
        self.done: dict = {}
        self.attempts: dict = {}

    def start(self, key) -> None:
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.done[key] = 0

    def update(self, key, frames: int) -> None:
        self.done[key] = frames

    def snapshot(self) -> tuple[dict, dict]:
        return self.done, self.attempts


class StylizeWorker:
    """A Ray actor that builds its stylizer once, then converts files and segments with it."""

    def __init__(self, model: str, style, engine: EngineConfig, board: str):
        import ray

        from ..stylizers.factory import load_stylizer

        self.stylizer = load_stylizer(model, style, engine)
        # The board by name: an actor handle among the arguments would keep them in the object store,
        # where a restart cannot count on finding them (ray-project/ray#53727).
        self.board = ray.get_actor(board)

    def ready(self) -> str:
        return f"{socket.gethostname()} pid {os.getpid()}: {self.stylizer.description}"

    def convert(self, key, job: Job, config: ConvertConfig, skip_existing: bool, overwrite: bool) -> JobResult:
        return run_job(job, self.stylizer, config, skip_existing, overwrite, self._reporter(key))

    def segment(self, key, src: str, segment: Segment, part: str, config: ConvertConfig) -> int:
        return stylize_segment(src, segment, part, self.stylizer, config, self._reporter(key))

    def _reporter(self, key) -> Callable[[int], None]:
        import ray

        self.board.start.remote(key)
        context = ray.get_runtime_context()
        last = 0.0

        def report(done: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= REPORT_SECONDS:  # fire and forget, a few times a second
                last = now
                self.board.update.remote(key, done)
                if context.is_canceled():  # the driver's Ctrl-C: stop as a local Ctrl-C would, removing the
                    raise KeyboardInterrupt  # half-written file and the output's lock

        return report


def worker_plan(engine: EngineConfig, resources: dict, calls: int, workers: int | None = None
                ) -> tuple[int, dict, EngineConfig]:
    """(workers, Ray resources per worker, the engine each builds) for a cluster with `resources`."""
    gpus = int(resources.get("GPU", 0))
    if engine.device.startswith("cuda") or (engine.device == "auto" and gpus):
        if not gpus:
            raise BackendError("--device cuda, but the Ray cluster has no GPUs")
        count = workers or gpus
        return max(1, min(count, calls)), {"num_gpus": 1, "num_cpus": 1}, engine
    threads = engine.threads or 1  # one thread per worker: as many workers as cores beats one wide engine
    count = workers or max(1, int(resources.get("CPU", 1)) // threads)
    return max(1, min(count, calls)), {"num_cpus": threads}, replace(engine, threads=threads)


class WorkerPool:
    """Keeps each worker busy with one call at a time, as `ray.util.ActorPool` does, and ties every result
    or failure to its call (ActorPool's unordered results do not say whose call a dead worker's error was).

    A worker whose call failed for good after Ray's retries is replaced by a fresh one.
    """

    worker_class: type = StylizeWorker

    def __init__(self, ray, count: int, options: dict, model: str, style, engine: EngineConfig,
                 max_task_retries: int):
        self.ray = ray
        name = f"rtstyle-progress-{secrets.token_hex(4)}"
        self.board = ray.remote(num_cpus=0)(ProgressBoard).options(name=name).remote()
        # max_restarts=-1: a worker is always brought back; each call gets max_task_retries more tries.
        self._actor = ray.remote(max_restarts=-1, max_task_retries=max_task_retries, **options)(self.worker_class)
        self._args = (model, style, engine, name)
        self.actors = [self._actor.remote(*self._args) for _ in range(count)]
        self.running: dict = {}

    def ready(self) -> list[str]:
        """Wait until every worker has built its stylizer; a failure there is one error for all."""
        try:
            return self.ray.get([actor.ready.options(max_task_retries=0).remote() for actor in self.actors])
        except self.ray.exceptions.RayError as exc:
            raise BackendError(f"the Ray workers could not build the stylizer: {_cause(exc)}") from None

    def run(self, calls: list[tuple[object, Callable]], results: dict, poll: Callable[[], None]) -> None:
        """`calls`: (key, function of a worker that returns an ObjectRef); fills `results[key]` with each
        value, or the exception that ended it. `poll()` runs a few times a second (progress)."""
        ray = self.ray
        idle, waiting = list(self.actors), deque(calls)
        while waiting or self.running:
            while idle and waiting:
                key, call = waiting.popleft()
                actor = idle.pop()
                self.running[call(actor)] = (key, actor)
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=REPORT_SECONDS)
            for ref in ready:
                key, actor = self.running.pop(ref)
                try:
                    results[key] = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    results[key] = exc
                    actor = self._replace(actor)
                except ray.exceptions.RayError as exc:
                    results[key] = exc
                idle.append(actor)
            poll()

    def _replace(self, actor):
        self.ray.kill(actor, no_restart=True)
        fresh = self._actor.remote(*self._args)
        self.actors[self.actors.index(actor)] = fresh
        return fresh

    def stop(self, wait_s: float = 10.0, cancel_s: float = 3.0) -> None:
        """Cancel the calls still running (their workers clean up and stop; cancelled calls are not retried),
        then kill the workers and wait until Ray reports them dead (ray.kill only asks): a call to a dead actor
        fails, to a live one it waits or answers. A file a worker was renaming into place as the kill came
        may still appear: it is complete, and --skip-existing skips it."""
        ray = self.ray
        if self.running:
            for ref in self.running:
                ray.cancel(ref)
            ray.wait(list(self.running), num_returns=len(self.running), timeout=cancel_s)
        for actor in [*self.actors, self.board]:
            ray.kill(actor, no_restart=True)
        deadline = time.monotonic() + wait_s
        for actor in self.actors:
            while time.monotonic() < deadline:
                try:
                    ray.get(actor.__ray_ready__.options(max_task_retries=0).remote(),
                            timeout=max(0.1, deadline - time.monotonic()))
                except ray.exceptions.RayError:  # dead (or out of time)
                    break
                time.sleep(0.05)


def _cause(exc: BaseException) -> str:
    """One line for a Ray error: the worker's own exception where there is one."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(exc)):
        return str(cause) if isinstance(cause, RtstyleError) else f"{cause.__class__.__name__}: {cause}"
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    if lines and lines[-1].startswith("rtstyle.errors."):  # a worker's own error, as Ray's traceback ends
        return lines[-1].split(": ", 1)[-1]
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}"


def _start_pool(ray, model: str, style, engine: EngineConfig, config: RayConfig, calls: int) -> WorkerPool:
    count, options, engine = worker_plan(engine, ray.cluster_resources(), calls, config.workers)
    log.info("Ray: %d workers, each with %s", count, options)
    pool = WorkerPool(ray, count, options, str(model), style, engine, config.max_task_retries)
    try:
        for line in pool.ready():
            log.info("worker ready: %s", line)
    except BaseException:
        pool.stop()
        raise
    return pool


def _progress_poll(pool: WorkerPool, totals: dict, results: dict, progress: Callable[[int, int], None] | None
                   ) -> Callable[[], None]:
    total = sum(totals.values())

    def poll() -> None:
        if progress is None:
            return
        done, _ = pool.ray.get(pool.board.snapshot.remote())
        frames = sum(totals[key] if key in results else min(done.get(key, 0), totals[key]) for key in totals)
        progress(frames, total)

    return poll


def run_ray_batch(jobs: list[Job], model: str, style, engine: EngineConfig, config: ConvertConfig,
                  ray_config: RayConfig, skip_existing: bool = False, overwrite: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> BatchResult:
    """`batch.run_batch` on Ray workers: the same results, statuses and progress over the whole batch."""
    totals = dict(enumerate(job_totals(jobs)))
    results: dict = {}
    shipped = [Job(job.source.resolve(), job.output.resolve()) for job in jobs]  # what every node can open
    with ray_session(ray_config) as ray:
        pool = _start_pool(ray, model, style, engine, ray_config, len(jobs))
        calls = [(i, lambda actor, i=i, job=job: actor.convert.remote(i, job, config, skip_existing, overwrite))
                 for i, job in enumerate(shipped)]
        interrupted = False
        try:
            pool.run(calls, results, _progress_poll(pool, totals, results, progress))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            attempts = ray.get(pool.board.snapshot.remote())[1] if not interrupted else {}
            pool.stop()
    batch = BatchResult()
    for i, job in enumerate(jobs):
        if i in results:
            batch.results.append(_as_result(job, shipped[i], results[i], attempts.get(i, 1)))
        elif interrupted and any(key == i for key, _ in pool.running.values()):
            batch.results.append(JobResult(str(job.source), str(job.output), "interrupted"))
        elif interrupted:  # never started: listed, as the in-process batch lists them
            batch.results.append(JobResult(str(job.source), str(job.output), "not tried"))
    return batch


def _as_result(job: Job, shipped: Job, outcome, attempts: int) -> JobResult:
    """The worker's result with the paths as the user gave them, or a failure for a call that raised."""
    if isinstance(outcome, JobResult):
        error = outcome.error.replace(str(shipped.source), str(job.source))
        return replace(outcome, source=str(job.source), output=str(job.output), attempts=attempts, error=error)
    from ray.exceptions import RayActorError

    if isinstance(outcome, RayActorError):  # the worker process died under it, on every try
        error = (f"{job.source}: its worker died {attempts} time{'s' * (attempts > 1)} while converting it "
                 f"(killed, out of memory or its node lost; Ray restarted the worker and retried the file)")
    else:
        error = f"{job.source}: worker failed: {_cause(outcome)}"
    return JobResult(str(job.source), str(job.output), "failed", attempts=attempts, error=error)


def convert_segmented_on_ray(src: str | Path, dst: str | Path, model: str, style, engine: EngineConfig,
                             config: ConvertConfig, seconds: float, ray_config: RayConfig,
                             progress: Callable[[int, int], None] | None = None) -> ConvertResult:
    """`segments.convert_segmented` with the segments spread over Ray workers; the driver joins them."""
    given = Path(dst)
    src, dst = Path(src).resolve(), given.resolve()  # what every node can open
    started = time.perf_counter()
    check_paths(src, dst)
    check_segmentable(src, dst, config)
    segments = plan_segments(src, seconds, preroll_frames(config.smooth, config.smooth_strength))
    config = segment_config(config, dst)
    log.info("%s: %d segments of about %g s", src.name, len(segments), seconds)
    totals = {segment.index: segment.frames for segment in segments}
    results: dict = {}
    with claim_output(dst), parts_folder(dst) as folder, ray_session(ray_config) as ray:
        parts = [part_path(folder, segment) for segment in segments]
        pool = _start_pool(ray, model, style, engine, ray_config, len(segments))
        calls = [(s.index, lambda actor, s=s, part=part: actor.segment.remote(s.index, str(src), s, str(part), config))
                 for s, part in zip(segments, parts)]
        try:
            pool.run(calls, results, _progress_poll(pool, totals, results, progress))
        finally:
            pool.stop()
        failed = next((s for s in segments if not isinstance(results.get(s.index), int)), None)
        if failed is not None:
            raise PipelineError(f"{src}: segment {failed.index} (frames {failed.first}-{failed.stop - 1}) failed: "
                                f"{_cause(results.get(failed.index))}")
        result = join_into(src, parts, dst, config, sum(results.values()), started, *frame_size(parts[0]))
    return replace(result, output=given)
