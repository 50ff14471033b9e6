"""Animated GIF output for short clips: one palette for the whole clip, a rate GIFs play well at.

GIF holds 256 colours a frame and timings in hundredths of a second, so frames are kept at up to
`MAX_FPS` (the others dropped by timestamp) and mapped, with dithering, onto one palette made from
frames sampled across the clip: a palette per frame would flicker. The size is the converter's
business (`GIF_MAX_SIDE` is its default for `--max-side`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import OutputError
from .video import VideoInfo

MAX_FPS = 15.0
GIF_MAX_SIDE = 480
PALETTE_SAMPLES = 16  # frames the palette is made from


def keeps(previous: float | None, seconds: float) -> bool:
    """Whether a frame at `seconds` is kept after one kept at `previous`: GIFs play at up to MAX_FPS."""
    return previous is None or seconds - previous >= 1.0 / MAX_FPS - 1e-6


def kept_times(times: list[float]) -> list[float]:
    """The times of the frames a GIF keeps from frames at `times` (in order)."""
    kept: list[float] = []
    for seconds in times:
        if keeps(kept[-1] if kept else None, seconds):
            kept.append(seconds)
    return kept


def durations_ms(times: list[float], rate: float) -> list[int]:
    """Each kept frame's GIF duration. GIF counts hundredths of a second: the timestamps are rounded, not
    each duration, so that the clip keeps its length (66.7 ms frames become 70, 60, 70, ... rather than all 70)."""
    ticks = [round(t * 100) for t in times]
    ticks.append(ticks[-1] + max(2, round(100 / min(MAX_FPS, rate))))
    return [10 * max(2, end - start) for start, end in zip(ticks, ticks[1:])]


class GifWriter:
    """The VideoWriter interface for .gif: frames are kept (small, paletted later) and written on close."""

    layout = "rgb24"

    def __init__(self, path: str | Path, info: VideoInfo):
        self.path = Path(path)
        self.info = info
        self.frames_written = 0
        self._frames: list[np.ndarray] = []
        self._times: list[float] = []  # seconds

    def write(self, image: np.ndarray, pts: int | None) -> None:
        seconds = float(pts * self.info.time_base) if pts is not None else self.frames_written / float(self.info.rate)
        self.frames_written += 1
        if not keeps(self._times[-1] if self._times else None, seconds):
            return  # faster than a GIF plays: dropped
        self._frames.append(image if image.dtype == np.uint8 else (image >> 8).astype(np.uint8))
        self._times.append(seconds)

    def end_audio_with_video(self) -> None:
        return None  # a GIF has no audio

    def close(self) -> None:
        from PIL import Image

        if not self._frames:
            return
        step = max(1, len(self._frames) // PALETTE_SAMPLES)
        sample = np.concatenate(self._frames[::step], axis=0)
        palette = Image.fromarray(sample).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        images = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
                  for frame in self._frames]
        durations = durations_ms(self._times, float(self.info.rate))
        try:
            images[0].save(self.path, format="GIF", save_all=True, append_images=images[1:], duration=durations,
                           loop=0, optimize=False)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path} ({exc})") from exc

    def abort(self) -> None:
        self._frames.clear()
