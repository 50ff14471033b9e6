"""Animated GIF output in bounded memory: one palette for the whole clip, a rate GIFs play well at.

GIF holds 256 colours a frame and timings in hundredths of a second, so frames are kept at up to
`MAX_FPS` (the others dropped by timestamp) and mapped, with dithering, onto one palette made from
frames sampled across the clip: a palette per frame would flicker.

Two passes, so that no frame waits in memory: the kept frames go, as they come, into a temporary
lossless file (FFV1) while at most `2 * PALETTE_SAMPLES` of them are held as the palette's sample;
on close the palette is made, and the temporary file is read back, frame by frame, into the GIF
encoder (FFmpeg's, which writes each frame as it gets it). Memory holds the sample, not the clip:
for 20 s of 720p, the frames alone were 1.4 GB held to the end.

The size is the converter's business (`GIF_MAX_SIDE` is its default for `--max-side`).
"""

from __future__ import annotations

import logging
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import OutputError
from .locks import shown_path
from .video import VideoInfo, report_left_out

log = logging.getLogger(__name__)

MAX_FPS = 15.0
GIF_MAX_SIDE = 480
PALETTE_SAMPLES = 16  # frames the palette is made from
TICK = Fraction(1, 100)  # GIF's unit of time


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


def gif_ticks(times: list[float], rate: float) -> list[int]:
    """Each kept frame's start in hundredths, and the end of the last. GIF counts hundredths: rounding
    the timestamps, not each duration, keeps the clip's length (66.7 ms frames become 70, 60, 70, ...)."""
    ticks = [round(t * 100) for t in times]
    ticks.append(ticks[-1] + max(2, round(100 / min(MAX_FPS, rate))))
    for i in range(1, len(ticks)):  # at least 2 hundredths a frame: players stretch shorter ones to 10
        ticks[i] = max(ticks[i], ticks[i - 1] + 2)
    return ticks


def durations_ms(times: list[float], rate: float) -> list[int]:
    """Each kept frame's duration in the GIF that `GifWriter` writes."""
    ticks = gif_ticks(times, rate)
    return [10 * (end - start) for start, end in zip(ticks, ticks[1:])]


class GifWriter:
    """The VideoWriter interface for .gif: frames are spooled losslessly to a temporary file and
    paletted on close."""

    layout = "rgb24"

    def __init__(self, path: str | Path, info: VideoInfo):
        import av

        self.path = Path(path)
        self.info = info
        self.frames_written = 0
        self.held_peak = 0  # the most frames held in memory at once (the palette's sample)
        self._times: list[float] = []  # seconds of each kept frame
        self._sample: list[np.ndarray] = []
        kept_rate = min(MAX_FPS, float(info.rate or MAX_FPS))
        expected = max(1, round(info.duration * kept_rate) if info.duration else info.frames)
        self._sample_step = max(1, expected // PALETTE_SAMPLES)
        self._spool_dir = tempfile.TemporaryDirectory(prefix="rtstyle-gif-")
        self._spool_path = Path(self._spool_dir.name) / "frames.mkv"
        self._spool = av.open(str(self._spool_path), "w")
        stream = self._spool.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, "bgr0"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 25)
        self._spool_stream = stream
        report_left_out(self.path, gif_left_out(info))

    def write(self, image: np.ndarray, pts: int | None) -> None:
        import av

        seconds = float(pts * self.info.time_base) if pts is not None else self.frames_written / float(self.info.rate)
        self.frames_written += 1
        if not keeps(self._times[-1] if self._times else None, seconds):
            return  # faster than a GIF plays: dropped
        image = image if image.dtype == np.uint8 else (image >> 8).astype(np.uint8)
        if len(self._times) % self._sample_step == 0:
            self._sample.append(image.copy())
            if len(self._sample) > 2 * PALETTE_SAMPLES:  # the clip is longer than its header said: thin it
                self._sample = self._sample[::2]
                self._sample_step *= 2
            self.held_peak = max(self.held_peak, len(self._sample))
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(format="bgr0")
        frame.pts, frame.time_base = len(self._times), self._spool_stream.time_base
        self._spool.mux(self._spool_stream.encode(frame))
        self._times.append(seconds)

    def end_audio_with_video(self) -> None:
        return None  # a GIF has no audio

    def close(self) -> None:
        try:
            self._spool.mux(self._spool_stream.encode(None))
            self._spool.close()
            if self._times:
                self._write_gif(self._palette())
        finally:
            self._sample.clear()
            self._spool_dir.cleanup()

    def _palette(self):
        from PIL import Image

        sample = np.concatenate(self._sample, axis=0)
        self._sample.clear()
        return Image.fromarray(sample).quantize(colors=256, method=Image.Quantize.MEDIANCUT)

    def _write_gif(self, palette) -> None:
        import av
        from PIL import Image

        colours = np.asarray(palette.getpalette()[:768], np.uint8).reshape(-1, 3)
        argb = np.zeros((256, 4), np.uint8)
        argb[:, 0] = 255  # opaque: PyAV takes each entry as A, R, G, B
        argb[:len(colours), 1:] = colours
        ticks = gif_ticks(self._times, float(self.info.rate))
        following = dict(zip(ticks, ticks[1:]))
        try:
            out = av.open(str(self.path), "w", format="gif")
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {shown_path(self.path)} ({exc.strerror or exc})") from exc
        try:
            with av.open(str(self._spool_path)) as spool:
                stream = out.add_stream("gif", rate=round(min(MAX_FPS, float(self.info.rate))) or 1)
                stream.width, stream.height, stream.pix_fmt = self.info.width, self.info.height, "pal8"
                stream.time_base = stream.codec_context.time_base = TICK
                for index, decoded in enumerate(spool.decode(video=0)):
                    rgb = Image.fromarray(decoded.to_ndarray(format="rgb24"))
                    indices = np.asarray(rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG))
                    frame = av.VideoFrame.from_ndarray((np.ascontiguousarray(indices), argb), format="pal8")
                    frame.pts, frame.time_base = ticks[index], TICK
                    self._mux(out, stream.encode(frame), following)
                self._mux(out, stream.encode(None), following)
            out.close()
        except (av.error.FFmpegError, OSError) as exc:
            _close_quietly(out)
            raise OutputError(f"cannot write {shown_path(self.path)} ({exc.strerror or exc})") from exc

    @staticmethod
    def _mux(out, packets, following: dict[int, int]) -> None:
        for packet in packets:  # each frame lasts until the next one starts (the last: a frame's time)
            if packet.pts in following:
                packet.duration = following[packet.pts] - packet.pts
            out.mux(packet)

    def abort(self) -> None:
        self._sample.clear()
        _close_quietly(self._spool)
        self._spool_dir.cleanup()


def gif_left_out(info: VideoInfo) -> list[str]:
    """What of the input a GIF cannot hold."""
    dropped = list(info.left_out)
    if info.alpha:
        dropped.append("the alpha channel (GIF holds on/off transparency only; write .mov or .webm to keep it)")
    if info.audio_streams:
        dropped.append("the audio (GIF has none)")
    if info.subtitle_streams:
        dropped.append("the subtitles")
    if info.chapters:
        dropped.append(f"{len(info.chapters)} chapters")
    if info.covers:
        dropped.append("the cover picture")
    return dropped


def _close_quietly(container) -> None:
    try:
        container.close()
    except Exception:  # closing a half-written container can fail; the file is discarded anyway
        log.debug("closing %s failed", container, exc_info=True)
