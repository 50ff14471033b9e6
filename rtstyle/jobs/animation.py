"""Animated pictures (WebP, APNG): every frame stylized, with its timing, loop and alpha.

Pillow opens an animated WebP as its first frame, so a still conversion would keep one frame
and drop the rest without a word. Here each frame is stylized; an output that animates (.webp,
.png as APNG) gets them all, with the input's durations and loop count; any other output gets
the first, and one warning line says how many were left out.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..io.images import open_image

log = logging.getLogger(__name__)

ANIMATED_OUTPUTS = {".webp", ".png"}


def frame_count(path: Path) -> int:
    """Frames in a picture file: 1 for a still (or what Pillow cannot open)."""
    from PIL import UnidentifiedImageError

    try:
        with open_image(path) as image:
            return int(getattr(image, "n_frames", 1) or 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 1


def read_frames(path: Path, max_side: int | None = None):
    """(RGB, alpha or None, duration ms) of each frame, composited as a player shows it."""
    from PIL import Image, ImageSequence

    try:
        with open_image(path) as image:
            for frame in ImageSequence.Iterator(image):
                rgba = frame.convert("RGBA")
                if max_side and max(rgba.size) > max_side:
                    rgba.thumbnail((max_side, max_side), Image.LANCZOS)
                pixels = np.asarray(rgba)
                alpha = pixels[..., 3].copy() if pixels[..., 3].min() < 255 else None
                yield np.ascontiguousarray(pixels[..., :3]), alpha, int(frame.info.get("duration", 100) or 100)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot read its frames ({exc.__class__.__name__})") from exc


def animates(src: Path, dst: Path, left_out: list[str]) -> bool:
    """Whether `src` is animated and `dst` can hold it; where it cannot, what is left out goes into `left_out`."""
    frames = frame_count(src)
    if frames <= 1:
        return False
    if dst.suffix.lower() in ANIMATED_OUTPUTS:
        return True
    left_out.append(f"{frames - 1} of the {frames} frames of {src.name} ({dst.suffix} holds one picture; write "
                    ".webp or .png to keep them all)")
    return False


def convert_animation(src: Path, dst: Path, tmp: Path, stylizer, max_side: int | None) -> tuple[int, float, int, int]:
    """Stylize every frame of `src` into `tmp` (renamed to `dst` by the caller); (frames, seconds, width, height)."""
    from PIL import Image

    started = time.perf_counter()
    with open_image(src) as probe:
        loop = probe.info.get("loop", 0)
    images, durations = [], []
    for rgb, alpha, duration in read_frames(src, max_side):
        styled = Image.fromarray(stylizer([rgb])[0], "RGB")
        if alpha is not None:
            styled.putalpha(Image.fromarray(alpha, "L"))
        images.append(styled)
        durations.append(duration)
    options = {"quality": 95} if dst.suffix.lower() == ".webp" else {}
    try:
        images[0].save(tmp, format=dst.suffix[1:].upper(), save_all=True, append_images=images[1:],
                       duration=durations, loop=loop, **options)
    except OSError as exc:
        raise OutputError(f"cannot write {dst} ({exc})") from exc
    return len(images), time.perf_counter() - started, images[0].width, images[0].height
