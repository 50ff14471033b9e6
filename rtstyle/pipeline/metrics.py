"""Run metrics: frames, drops, fps, capture-to-output latency percentiles and per-stage times."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

_WINDOW = 20000  # samples kept: bounded, so memory stays flat on long runs


class Metrics:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.frames = 0
        self.drops = 0
        self.scale = 1.0  # the fraction of the frames' size the stylizer works at (pipeline/scale.py)
        self.latencies: deque[float] = deque(maxlen=_WINDOW)
        self.stage_seconds: dict[str, deque[float]] = {}
        self._recent: deque[float] = deque(maxlen=60)  # output times, for a live fps readout
        self._lock = threading.Lock()

    def stage(self, name: str, seconds: float, frames: int = 1) -> None:
        with self._lock:
            self.stage_seconds.setdefault(name, deque(maxlen=_WINDOW)).append(seconds / max(frames, 1))

    def dropped(self, count: int = 1) -> None:
        with self._lock:
            self.drops += count

    def output(self, captured: float) -> None:
        now = time.perf_counter()
        with self._lock:
            self.frames += 1
            self.latencies.append(now - captured)
            self._recent.append(now)

    def live_fps(self) -> float:
        with self._lock:
            if len(self._recent) < 2:
                return 0.0
            return (len(self._recent) - 1) / (self._recent[-1] - self._recent[0])

    def last_latency_ms(self) -> float:
        with self._lock:
            return 1000 * self.latencies[-1] if self.latencies else 0.0

    def start(self) -> None:
        """Start the clock now (after warm-up), keeping nothing measured before."""
        with self._lock:
            self.started = time.perf_counter()
            self.frames = 0
            self.latencies.clear()
            self._recent.clear()

    def finish(self) -> None:
        self.finished = time.perf_counter()

    def summary(self) -> dict:
        with self._lock:
            elapsed = (self.finished or time.perf_counter()) - self.started
            latency = np.array(self.latencies) * 1000 if self.latencies else np.zeros(1)
            return {
                "frames": self.frames,
                "drops": self.drops,
                "scale": self.scale,
                "seconds": round(elapsed, 3),
                "fps": round(self.frames / elapsed, 2) if elapsed > 0 else 0.0,
                "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 2),
                               "p95": round(float(np.percentile(latency, 95)), 2),
                               "max": round(float(latency.max()), 2)},
                "stage_ms_per_frame": {name: round(1000 * float(np.mean(values)), 2)
                                       for name, values in self.stage_seconds.items() if values},
            }
