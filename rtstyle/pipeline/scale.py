"""Stylizing at a fraction of the frame's size: fewer pixels through the network, the result scaled back.

The network's cost grows with its pixels, so a live stream on a small CPU that cannot keep up with
the camera at full size can at `scale` 0.75 (0.56 of the pixels) or 0.5 (a quarter). It changes the
look as well as the speed: the network paints strokes of a fixed size in its own pixels, so at 0.5
they come out twice as large on the frame, and the finest detail is softer after the enlargement.
The temporal smoother runs at the reduced size too, on the network's own output.

`fitted_scale` picks a scale for a live source by timing the stylizer once at the start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from ..config import AUTO, LEAST_SCALE, check_scale, check_scale_setting  # noqa: F401  (the scale's rules)
from ..model.spec import SIZE_MULTIPLE

SMALLEST = 16  # the least side the network takes without padding
SCALE_STEP = 0.05
#: The share of the source's frame interval a fitted scale aims one frame's stylization at. Measured: at
#: 0.7 (22 ms of a 30 fps camera's 33) a stream keeps every frame at p95 23-26 ms; near 0.85 it starts to
#: lose frames, and each frame shown then also waits for its turn (benchmarks/results/virtual_cam_cpu.md).
FRAME_SHARE = 0.7


def working_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) the network runs at for frames of this size.

    The nearest multiples of SIZE_MULTIPLE (16 at least), so the engine never pads them.
    """
    if scale >= 1.0:
        return width, height
    return tuple(max(SMALLEST, SIZE_MULTIPLE * round(side * scale / SIZE_MULTIPLE)) for side in (width, height))


def shrink(images: list[np.ndarray], scale: float) -> list[np.ndarray]:
    """Each frame at `working_size`; area averaging, which does not alias."""
    if scale >= 1.0:
        return images
    import cv2

    return [cv2.resize(image, working_size(image.shape[1], image.shape[0], scale), interpolation=cv2.INTER_AREA)
            for image in images]


def enlarge(images: list[np.ndarray], like: list[np.ndarray]) -> list[np.ndarray]:
    """Each of `images` (H x W x 3) at the size of the frame of `like` it was made from (bilinear)."""
    import cv2

    return [cv2.resize(image, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
            for image, frame in zip(images, like)]


def fitted_scale(stylize: Callable[[list[np.ndarray]], list[np.ndarray]], width: int, height: int, fps: float,
                 tries: int = 3) -> tuple[float, float]:
    """(scale, ms a full-size frame took): the largest scale, in steps of 0.05, whose frames `stylize` should
    do in FRAME_SHARE of the source's frame interval.

    Timed on a blank frame at full size, the best of `tries` after one untimed call (a network's time does
    not depend on what the pixels show); the time is taken to go with the pixels, the square of the scale.
    """
    frame = [np.zeros((height, width, 3), np.uint8)]
    stylize(frame)
    seconds = math.inf
    for _ in range(tries):
        started = time.perf_counter()
        stylize(frame)
        seconds = min(seconds, time.perf_counter() - started)
    return scale_to_fit(1.0, FRAME_SHARE / fps / seconds), seconds * 1000


def scale_to_fit(scale: float, time_ratio: float) -> float:
    """The largest scale up to `scale`, in steps of 0.05 and a quarter at least, at which the stylizer takes
    `time_ratio` of the time it takes at `scale` (its time goes with the pixels, the square of the scale)."""
    if time_ratio >= 1.0:
        return scale
    steps = math.floor(scale * math.sqrt(time_ratio) / SCALE_STEP + 1e-9)  # 0.6 / 0.05 is 11.999... in floats
    return max(LEAST_SCALE, round(steps * SCALE_STEP, 2))
