"""Stylizing at a fraction of the frame's size: fewer pixels through the network, the result scaled back.

The network's cost grows with its pixels, so a live stream on a small CPU that cannot keep up with
the camera at full size can at `scale` 0.75 (0.56 of the pixels) or 0.5 (a quarter). It changes the
look as well as the speed: the network paints strokes of a fixed size in its own pixels, so at 0.5
they come out twice as large on the frame, and the finest detail is softer after the enlargement.
The temporal smoother runs at the reduced size too, on the network's own output.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model.spec import SIZE_MULTIPLE

SMALLEST = 16  # the least side the network takes without padding
LEAST_SCALE = 0.25


def check_scale(scale: float) -> float:
    """`scale` if it is one the pipeline takes, else an InputError saying which are."""
    if not LEAST_SCALE <= scale <= 1.0:
        raise InputError(f"the scale must be between {LEAST_SCALE} and 1, got {scale:g}")
    return scale


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
