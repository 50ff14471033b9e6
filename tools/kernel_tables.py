"""0/1 tables that re-lay a convolution kernel out for an equivalent conv at a lower resolution.

Shared by the ONNX rewrites (onnx_rewrites.py, as Einsum operands) and the torch ones
(torch_rewrites.py). numpy only.
"""

from __future__ import annotations

import numpy as np


def space_to_depth_taps(kernel: int, block: int) -> int:
    """Side of the kernel a k x k conv becomes after space-to-depth by `block`."""
    return -(-(kernel + block - 1) // block)


def space_to_depth_select(kernel: int, block: int) -> np.ndarray:
    """select[r, v, u, i] = 1 where kernel row i = block * u + v - r.

    Output phase r (its row modulo `block`) reads input phase v of block row u through kernel row
    i; the same table serves the columns. Needs a reflect-padded input whose padded side is a
    multiple of `block`.
    """
    taps = space_to_depth_taps(kernel, block)
    select = np.zeros((block, block, taps, kernel), np.float32)
    for r in range(block):
        for v in range(block):
            for u in range(taps):
                if 0 <= block * u + v - r < kernel:
                    select[r, v, u, block * u + v - r] = 1.0
    return select


def sub_pixel_select() -> np.ndarray:
    """select[r, t, i] = 1 where row 2a + r + i - 1 of a 2x nearest upsampling lies in low row a + t - 1.

    For a 3x3 conv after the upsampling: output phase r reads low-resolution tap t through kernel row i.
    """
    select = np.zeros((2, 3, 3), np.float32)
    for r in range(2):
        for i in range(3):
            select[r, (r + i - 1) // 2 + 1, i] = 1.0
    return select
