"""A synthetic moving scene, and a clip file made from it (with a tone as audio).

It stands in for a camera in tests and benchmarks and gives `rtstyle demo` something to
convert on a machine with no sample media.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np


def scene_frame(index: int, width: int, height: int, fps: float = 30.0) -> np.ndarray:
    """Frame `index` of a scene: a sky gradient, hills, and discs that drift across it."""
    t = index / fps
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    image = np.empty((height, width, 3), dtype=np.float32)
    image[..., 0] = 0.35 + 0.4 * y
    image[..., 1] = 0.55 + 0.25 * y
    image[..., 2] = 0.95 - 0.3 * y
    hills = 0.7 + 0.08 * np.sin(x * 9.0 + t * 0.5) + 0.05 * np.sin(x * 23.0)
    ground = y > hills
    image[np.broadcast_to(ground, (height, width))] = (0.25, 0.55, 0.2)
    stripes = (np.sin(x * 140.0 + y * 30.0) > 0.6) & ground
    image[stripes] = (0.35, 0.42, 0.15)
    discs = [((0.2 + 0.15 * t) % 1.2 - 0.1, 0.35, 0.12, (0.95, 0.8, 0.2)),
             ((0.9 - 0.1 * t) % 1.2 - 0.1, 0.5, 0.08, (0.85, 0.2, 0.25)),
             (0.5 + 0.3 * math.sin(t), 0.25 + 0.1 * math.cos(1.3 * t), 0.05, (0.95, 0.95, 0.95))]
    aspect = width / height
    for cx, cy, radius, colour in discs:
        inside = ((x - cx) * aspect) ** 2 + (y - cy) ** 2 < radius**2
        image[np.broadcast_to(inside, (height, width))] = colour
    return (image * 255.0 + 0.5).astype(np.uint8)


def write_clip(path: str | Path, seconds: float = 3.0, width: int = 640, height: int = 360, fps: int = 30,
               audio: bool = True, sample_rate: int = 44100) -> Path:
    """Encode the scene as H.264 (+ an AAC tone) to `path`."""
    import av

    path = Path(path)
    frames = round(seconds * fps)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        video.options = {"preset": "ultrafast", "crf": "20"}
        tone = None
        if audio:
            tone = container.add_stream("aac", rate=sample_rate)
            tone.layout = "stereo"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(scene_frame(index, width, height, fps), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if tone is not None:
            _write_tone(container, tone, seconds, sample_rate)
    return path


def _write_tone(container, stream, seconds: float, sample_rate: int) -> None:
    import av

    total = round(seconds * sample_rate)
    chunk = 1024
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (np.arange(start, start + n) / sample_rate).astype(np.float32)
        wave = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def pan_matrix(shape: tuple[int, ...], index: int, width: int, height: int, fps: float = 30.0,
               centre: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """The 2x3 affine map from a photo of `shape` to frame `index` of `panned_frame` (the exact motion,
    for measures that need the true flow)."""
    t = index / fps
    rows, cols = shape[:2]
    w = min(cols * (0.675 + 0.075 * math.sin(t * 0.9)), rows * width / height)
    h = w * height / width
    x = cols * centre[0] - w / 2 + 0.1 * w * math.sin(t * 1.3)
    y = rows * centre[1] - h / 2 + 0.1 * h * math.cos(t * 1.1)
    x, y = min(max(0.0, x), cols - w), min(max(0.0, y), rows - h)
    return np.float32([[width / w, 0, -x * width / w], [0, height / h, -y * height / h]])


def panned_frame(photo: np.ndarray, index: int, width: int, height: int, fps: float = 30.0,
                 centre: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """Frame `index` of a slow camera move over `photo`: a window of the output's aspect, 60-75 % of the
    photo's width, that pans around `centre` (fractions of the photo) and zooms, scaled to width x height.
    A moving clip of whatever the photo shows (a face, for the face tests and benchmarks)."""
    import cv2

    matrix = pan_matrix(photo.shape, index, width, height, fps, centre)
    shrinking = matrix[0, 0] < 1
    return cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
