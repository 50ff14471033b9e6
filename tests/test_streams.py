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


def photo_folder(folder: Path, photos: int, video: bool = False) -> Path:
    """`photos` 1024 x 768 JPEGs of the scene at different moments (and a clip, and a file that is no picture)."""
    folder.mkdir()
    for index in range(photos):
        Image.fromarray(scene_frame(index * 7, 1024, 768)).save(folder / f"photo{index:03d}.jpg", quality=90)
    if video:
        from rtstyle.io.synthetic import write_clip

        write_clip(folder / "clip.mp4", seconds=1.0, width=320, height=180, fps=24, audio=False)
    (folder / "notes.png").write_bytes(b"not a picture")
    return folder


def test_training_photos_are_held_small_and_within_a_budget(tmp_path):
    """Content photos are kept at the size crops need, in 8 bits, up to a budget; the rest are read again
    when a crop needs them, and give the crops the held ones would."""
    import torch

    from rtstyle.train.data import RandomCrops, crop_short_side, load_folder

    folder = photo_folder(tmp_path / "content", 6, video=True)
    short = crop_short_side(64)
    held = load_folder(folder, short_side=short)
    lean = load_folder(folder, short_side=short, budget=1_000_000)
    assert len(held.images) == len(lean.images) == 6 + 16 and held.names == lean.names
    assert [name for name, _ in held.skipped] == ["notes.png"]
    assert all(min(image.shape[:2]) <= short and image.dtype == np.uint8 for image in held.images)
    assert held.images.held_bytes == sum(image.nbytes for image in held.images)  # all of it, 8 bits, small
    assert held.images.held_bytes < 6 * 160 * 120 * 3 + 16 * 180 * 320 * 3
    assert lean.images.held_bytes <= 1_000_000
    for a, b in zip(held.images, lean.images):  # photos read again, video frames from their lossless copies
        assert np.array_equal(a, b)
    first = RandomCrops(held.images, 64, seed=3).batch(6)
    assert torch.equal(first, RandomCrops(lean.images, 64, seed=3).batch(6))


def test_training_memory_does_not_grow_with_the_folder(tmp_path):
    from rtstyle.train.data import RandomCrops, crop_short_side, load_folder

    peaks = {}
    for photos in (4, 16):
        folder = photo_folder(tmp_path / f"content{photos}", photos)
        tracemalloc.start()
        images = load_folder(folder, short_side=crop_short_side(64), budget=300_000).images
        RandomCrops(images, 64, seed=0).batch(8)
        peaks[photos] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # Held whole (as before: 8 bits and float), 16 photos were 16 x 12 MB; here one photo's decoding and
    # the budget.
    assert peaks[16] < peaks[4] + 1_000_000, peaks
