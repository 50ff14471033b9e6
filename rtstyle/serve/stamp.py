"""The frame stamp: a counter painted as black and white cells in a strip under each sent frame.

The page adds STRIP rows (1/30 of the picture's height) under the camera picture and writes a
16-bit frame counter into them (static/app.js, `drawStamp`); the server reads it, stylizes only
the picture above, and writes the same counter under the stylized picture, so the page can match
each frame that comes back with the moment it sent it. Everything is in fractions of the frame,
so a browser that scales the stream down on the way still gets readable stamps back. Cells are
whole blocks: they survive VP8 or H.264 at any bitrate WebRTC picks.

The strip also says how the browser turned its RGB into YUV, which WebRTC does not carry without
an RTP extension aiortc lacks: its first cell is white, its second black and its last pure red, so
the luma of those three tells full from limited range and BT.709 from BT.601 (Chromium sends
canvas frames as BT.709 full range; read as FFmpeg's untagged default, BT.601 limited, every
level moves by up to 15 and the stylizer paints a different picture).
"""

from __future__ import annotations

import numpy as np

from ..io.color import BT709, SMPTE170M, ColorInfo

CELLS = 20  # [white, black, sixteen bits (most significant first), even parity, red]
BITS = 16
RED = 2  # the last cell; dark enough to read as a 0
STRIP_DIVISOR = 31  # the strip is 1/31 of the sent frame: 1/30 of the picture (16 rows under 480)
PAINT = {0: (0, 0, 0), 1: (255, 255, 255), RED: (255, 0, 0)}
RED_LUMA = {SMPTE170M: 0.299, BT709: 0.2126}  # Kr: the luma of pure red in each matrix


def strip_rows(frame_height: int) -> int:
    """Rows of the strip at the bottom of a sent frame of this height."""
    return max(2, round(frame_height / STRIP_DIVISOR))


def cells(value: int) -> list[int]:
    bits = [(value >> (BITS - 1 - i)) & 1 for i in range(BITS)]
    return [1, 0, *bits, sum(bits) % 2, RED]


def _cell_means(plane: np.ndarray) -> list[float]:
    """Mean of the middle of each cell of the strip at the bottom of `plane` (H x W or H x W x 3)."""
    rows = strip_rows(plane.shape[0])
    strip = plane[plane.shape[0] - rows:]
    height, width = strip.shape[:2]
    inner = strip[height // 4: height - height // 4 or None]
    edges = np.linspace(0, width, CELLS + 1)
    means = []
    for left, right in zip(edges[:-1], edges[1:]):
        quarter = (right - left) / 4  # the middle of each cell: codecs blur the borders
        means.append(float(inner[:, int(left + quarter): int(right - quarter) or None].mean()))
    return means


def read_stamp(frame: np.ndarray) -> int | None:
    """The counter in the strip of an H x W x 3 uint8 frame, or None if the strip does not hold one."""
    found = [int(mean > 127) for mean in _cell_means(frame)]
    value = int("".join(map(str, found[2:2 + BITS])), 2)
    return value if found == [min(cell, 1) if cell != RED else 0 for cell in cells(value)] else None


def write_stamp(strip: np.ndarray, value: int) -> np.ndarray:
    """Paint `value` into `strip` (rows x W x 3 uint8) in place; returns it."""
    width = strip.shape[1]
    edges = np.linspace(0, width, CELLS + 1).round().astype(int)
    for cell, left, right in zip(cells(value % (1 << BITS)), edges[:-1], edges[1:]):
        strip[:, left:right] = PAINT[cell]
    return strip


def sent_color(luma: np.ndarray) -> ColorInfo | None:
    """How the sender made YUV, from the luma (H x W uint8) of its white, black and red cells.

    None when the cells do not look like a strip (no stamp, or a frame too damaged to tell).
    """
    means = _cell_means(luma)
    white, black, red = means[0], means[1], means[-1]
    full = abs(white - 255) + abs(black) < abs(white - 235) + abs(black - 16)
    low, span = (0.0, 255.0) if full else (16.0, 219.0)
    if abs(white - (low + span)) > 24 or abs(black - low) > 24:
        return None
    expected = {matrix: low + span * weight for matrix, weight in RED_LUMA.items()}
    matrix = min(expected, key=lambda m: abs(expected[m] - red))
    return ColorInfo(matrix, full, primaries=matrix, transfer=matrix)
