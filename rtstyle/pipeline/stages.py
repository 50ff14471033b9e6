"""Stage threads joined by bounded queues, with one stop signal for all of them.

A stage that raises sets the stop event; every other stage notices it at its next queue
operation (queue calls use short timeouts, so none blocks forever) and leaves quietly. The
first error is kept and re-raised by `Stages.join` in the calling thread. A separate *drain*
event asks the source to end the stream early while everything already read still flows to
the sink: that is what Ctrl-C does (see runner.py).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

END = object()  # end-of-stream marker, passed downstream once by each stage
_POLL_S = 0.05


class Stopped(Exception):
    """Raised inside a stage when another stage failed; the stage should just return."""


class Stages:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.drain = threading.Event()
        self.error: BaseException | None = None
        self.failed_stage = ""
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def queue(self, size: int) -> queue.Queue:
        return queue.Queue(maxsize=max(1, size))

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - any failure must stop every stage
                self.fail(name, exc)

        thread = threading.Thread(target=run, name=f"rtstyle-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def fail(self, name: str, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error, self.failed_stage = exc, name
                log.debug("stage %s failed", name, exc_info=exc)
        self.stop.set()

    def put(self, q: queue.Queue, item: object) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise Stopped

    def get(self, q: queue.Queue) -> object:
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        raise Stopped

    def join(self, timeout: float | None = None) -> None:
        """Wait for every stage; re-raise the first failure."""
        for thread in self._threads:
            while thread.is_alive():
                thread.join(_POLL_S if timeout is None else timeout)
                if timeout is not None:
                    break
        if self.error is not None:
            raise self.error
