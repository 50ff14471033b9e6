"""Frame sources: video files, webcams and a synthetic scene, behind one interface.

A source yields `Frame`s stamped with their capture time. File-like sources (`live = False`)
produce as fast as the consumer takes them; live sources (`live = True`) produce at their own
rate, and the pipeline drops stale frames rather than let latency build up.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .synthetic import scene_frame
from .video import VideoInfo, VideoReader

log = logging.getLogger(__name__)


@dataclass
class Frame:
    image: np.ndarray  # H x W x 3 RGB, uint8 (uint16 for high bit depths)
    index: int
    pts: int | None = None
    captured: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0  # where the frame lies in its video, from the first frame (files; schedules use it)
    alpha: np.ndarray | None = None  # H x W, where the source has alpha: not stylized, written back beside the colour


class Source(ABC):
    live: bool = False
    _size: tuple[int, int] = (0, 0)
    _fps: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self._size

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def expected_frames(self) -> int:
        """How many frames to expect, 0 when unknown or endless."""
        return 0

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends; `close()` from another thread ends it early."""

    def close(self) -> None:
        return None


class FileSource(Source):
    """A video file through PyAV, decoded with frame threading."""

    def __init__(self, path: str | Path, max_side: int | None = None, start: tuple[int, int | None] | None = None):
        """`start`: (pts, dts) of the keyframe to decode from (`VideoReader`)."""
        self.reader = VideoReader(path, max_side, start=start)

    @property
    def info(self) -> VideoInfo:
        return self.reader.info

    @property
    def size(self) -> tuple[int, int]:
        return self.info.width, self.info.height

    @property
    def fps(self) -> float:
        return float(self.info.rate)

    @property
    def expected_frames(self) -> int:
        return self.info.frames

    def frames(self) -> Iterator[Frame]:
        first = None
        for index, frame in enumerate(self.reader):
            if first is None:
                first = frame.pts
            if frame.pts is not None and first is not None:
                seconds = float((frame.pts - first) * self.info.time_base)
            else:
                seconds = index / float(self.info.rate or 1)
            yield Frame(frame.image, index, frame.pts, seconds=seconds, alpha=frame.alpha)

    def close(self) -> None:
        self.reader.close()


class SyntheticSource(Source):
    """The moving test scene, produced in real time at `fps` like a camera (or as fast as asked)."""

    live = True

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, frames: int | None = None,
                 realtime: bool = True):
        self._size, self._fps, self.count, self.realtime = (width, height), fps, frames, realtime
        self.live = realtime
        self._closed = threading.Event()
        # Rendering the scene costs a few ms; a small cycle of pre-rendered frames keeps the
        # source's own cost out of latency measurements.
        self._cycle = [scene_frame(i, width, height, fps) for i in range(int(fps))]

    @property
    def expected_frames(self) -> int:
        return self.count or 0

    def frames(self) -> Iterator[Frame]:
        start = time.perf_counter()
        index = 0
        while not self._closed.is_set() and (self.count is None or index < self.count):
            if self.realtime:
                delay = start + index / self._fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            yield Frame(self._cycle[index % len(self._cycle)], index, index)
            index += 1

    def close(self) -> None:
        self._closed.set()


class WebcamSource(Source):
    """An OpenCV camera (index or device path/URL) read by a grabber thread that keeps only the
    newest frame, so a slow consumer never sees old frames from the driver's buffer."""

    live = True

    def __init__(self, camera: int | str = 0, size: tuple[int, int] | None = None, fps: float | None = None):
        import cv2

        self._cv2 = cv2
        quiet = cv2.utils.logging.LOG_LEVEL_SILENT
        previous = cv2.utils.logging.setLogLevel(quiet)  # probing backends prints pages of warnings
        try:
            self.capture = cv2.VideoCapture(camera)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not self.capture.isOpened():
            raise InputError(f"no camera at {camera!r} (is it connected, and free?)")
        if size:
            self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps:
            self.capture.set(cv2.CAP_PROP_FPS, fps)
        self.capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a hint; many backends ignore it, hence the thread
        ok, first = self.capture.read()
        if not ok:
            self.capture.release()
            raise InputError(f"camera {camera!r} opened but gives no frames")
        self._size = (first.shape[1], first.shape[0])
        self._fps = self.capture.get(cv2.CAP_PROP_FPS) or fps or 30.0
        if size and self._size != tuple(size):
            log.warning("camera gives %dx%d, not the %dx%d asked for", *self._size, *size)
        self._latest: Frame | None = None
        self._fresh = threading.Condition()
        self._closed = threading.Event()
        self._count = 0
        self._grabber = threading.Thread(target=self._grab, name="rtstyle-camera", daemon=True)
        self._grabber.start()

    def _grab(self) -> None:
        failures = 0
        while not self._closed.is_set():
            ok, bgr = self.capture.read()
            if not ok:
                failures += 1
                if failures > 50:  # the camera went away
                    break
                time.sleep(0.01)
                continue
            failures = 0
            frame = Frame(self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB), self._count)
            self._count += 1
            with self._fresh:
                self._latest = frame
                self._fresh.notify_all()
        self._closed.set()
        with self._fresh:
            self._fresh.notify_all()

    def frames(self) -> Iterator[Frame]:
        last = -1
        while True:
            with self._fresh:
                while not self._closed.is_set() and (self._latest is None or self._latest.index == last):
                    self._fresh.wait(0.1)
                frame = self._latest
            if self._closed.is_set() and (frame is None or frame.index == last):
                return
            last = frame.index
            yield frame

    def close(self) -> None:
        self._closed.set()
        self._grabber.join(timeout=2)
        self.capture.release()
