"""What the preview window needs besides the window itself: its size on the screen, and text that stays
readable whatever size the window is shown at. The text is drawn into the picture with OpenCV (its
headless build draws too), at the size the picture is shown at, so it looks the same whatever shows it."""

from __future__ import annotations

import functools

import numpy as np

# Room left for a title bar, a panel or a dock when a window is fitted to the screen.
SCREEN_USE = (0.9, 0.85)
# Readable text on a screen, in screen pixels (the height of a capital letter, roughly).
TEXT_PX = (15.0, 30.0)


def fit_to_screen(size: tuple[int, int], screen: tuple[int, int] | None) -> tuple[int, int]:
    """`size` scaled down (never up, aspect kept) to fit the usable part of `screen`."""
    if screen is None:
        return size
    scale = min(1.0, screen[0] * SCREEN_USE[0] / size[0], screen[1] * SCREEN_USE[1] / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def text_scale(height: int, lines: list[str], width: int) -> float:
    """An OpenCV font scale whose letters are TEXT_PX tall on a picture `height` pixels tall shown
    1:1 (bigger on bigger windows), made smaller where the longest line would not fit across `width`."""
    scale = min(TEXT_PX[1], max(TEXT_PX[0], height / 28)) / _cap_height()
    room = 0.96 * width
    # Text width is not proportional to the scale (the stroke is a whole number of pixels, and OpenCV 5
    # draws these fonts from outlines), so one proportional step can overshoot: shrink until it fits.
    for _ in range(32):
        widest = max(drawn_width(line, scale) for line in lines)
        if widest <= room:
            break
        scale *= max(0.5, min(0.97, room / widest))
    return scale


def drawn_width(text: str, scale: float) -> int:
    """What `put_outlined` covers across: the text and its outline on both sides."""
    return text_width(text, scale) + 2 * _outline_reach(scale)


def _outline_reach(scale: float) -> int:
    return max(1, round(2.2 * scale))


def put_outlined(image: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """White text with a black outline, readable on any picture.

    The outline is the text drawn black around its place rather than once with a thicker stroke:
    OpenCV 5 draws these fonts from outlines, where a thicker stroke also widens the letters, so a
    thick black copy would drift out from under the white one.
    """
    import cv2

    stroke = max(1, round(1.6 * scale))
    reach = _outline_reach(scale)
    x, y = origin
    for dx, dy in ((-reach, 0), (reach, 0), (0, -reach), (0, reach), (-reach, -reach), (reach, reach),
                   (-reach, reach), (reach, -reach)):
        cv2.putText(image, text, (x + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), stroke, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), stroke, cv2.LINE_AA)


def text_width(text: str, scale: float) -> int:
    import cv2

    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, round(1.6 * scale)))[0][0]


def line_height(scale: float) -> int:
    return max(1, round(1.45 * _cap_height() * scale))


@functools.cache
def _cap_height() -> int:
    """Of FONT_HERSHEY_SIMPLEX at scale 1: 22 px in OpenCV 4, 27 in OpenCV 5, which draws it differently."""
    import cv2

    return cv2.getTextSize("H", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][1]
