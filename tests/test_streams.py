"""What goes in comes out: memory that stays bounded, and every stream kept or named in one warning."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtstyle.io.gif import PALETTE_SAMPLES, GifWriter
from rtstyle.io.synthetic import scene_frame
from rtstyle.io.video import VideoInfo


def clip_info(path: Path, width: int, height: int, frames: int, fps: int = 30) -> VideoInfo:
    return VideoInfo(path, width, height, Fraction(fps), Fraction(1, fps), frames, frames / fps, 0, 0,
                     (width, height))


def write_gif(path: Path, frames: int, width: int = 160, height: int = 96) -> GifWriter:
    """The scene at 30 fps, its last quarter turned red: colours only the end of the clip has."""
    writer = GifWriter(path, clip_info(path, width, height, frames))
    for index in range(frames):
        image = scene_frame(index, width, height)
        if index >= frames * 3 // 4:
            image = image.copy()
            image[..., 0], image[..., 1:] = 200 + image[..., 0] // 5, image[..., 1:] // 6
        writer.write(image, index)
    writer.close()
    return writer


def test_gif_streams_with_a_palette_sampled_across_the_clip(tmp_path):
    """Frames go to a lossless spool, not memory: peak memory does not grow with the clip, and the palette
    still sees the colours of its end."""
    peaks = {}
    for frames in (120, 600):
        tracemalloc.start()
        writer = write_gif(tmp_path / f"{frames}.gif", frames)
        peaks[frames] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert writer.frames_written == frames and writer.held_peak <= 2 * PALETTE_SAMPLES
        with Image.open(tmp_path / f"{frames}.gif") as gif:
            assert gif.n_frames == frames // 2  # 15 fps of 30
            durations = []
            for index in range(gif.n_frames):
                gif.seek(index)
                durations.append(gif.info["duration"])
            assert sum(durations) == pytest.approx(frames / 30 * 1000, abs=20)
            gif.seek(gif.n_frames - 1)
            red = np.asarray(gif.convert("RGB")).astype(int)
        assert red[..., 0].mean() > 190 and red[..., 1:].mean() < 50  # the end's colours are in the palette
    # 5 times the frames (14 MB of them held, as before): the same peak, within 1.5 MB
    assert peaks[600] < peaks[120] + 1.5e6, peaks
    assert not list(tmp_path.glob("**/frames.mkv"))
