"""What the preview window needs from the desktop: the screen's size, Qt's fonts, and text that stays
readable whatever size the window is shown at."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Room left for a title bar, a panel or a dock when a window is fitted to the screen.
SCREEN_USE = (0.9, 0.85)
# Readable text on a screen, in screen pixels (the height of a capital letter, roughly).
TEXT_PX = (15.0, 30.0)

_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts",
              "/usr/X11R6/lib/X11/fonts", "/System/Library/Fonts", "/Library/Fonts")


def screen_size() -> tuple[int, int] | None:
    """The size in pixels of the screen a new window opens on, or None where it cannot be found.

    On X11 the primary monitor (XRandR), else the whole X screen; on Windows the primary monitor;
    elsewhere Tk's idea of the screen.
    """
    finders = [_windows_screen] if sys.platform == "win32" else []
    if os.environ.get("DISPLAY") and sys.platform != "win32":
        finders.append(_x11_screen)
    finders.append(_tk_screen)
    for finder in finders:
        try:
            size = finder()
        except Exception as exc:  # a broken desktop library must not stop the preview: fall through
            log.debug("screen size from %s failed: %s", finder.__name__, exc)
            continue
        if size and size[0] > 0 and size[1] > 0:
            return size
    return None


def fit_to_screen(size: tuple[int, int], screen: tuple[int, int] | None) -> tuple[int, int]:
    """`size` scaled down (never up, aspect kept) to fit the usable part of `screen`."""
    if screen is None:
        return size
    scale = min(1.0, screen[0] * SCREEN_USE[0] / size[0], screen[1] * SCREEN_USE[1] / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _x11_screen() -> tuple[int, int] | None:
    name = ctypes.util.find_library("X11")
    if not name:
        return None
    x11 = ctypes.CDLL(name)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultScreen.argtypes = [ctypes.c_void_p]
    x11.XDisplayWidth.argtypes = x11.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(None)
    if not display:
        return None
    try:
        monitor = _xrandr_primary_monitor(display, x11.XDefaultRootWindow(display))
        screen = x11.XDefaultScreen(display)
        return monitor or (x11.XDisplayWidth(display, screen), x11.XDisplayHeight(display, screen))
    finally:
        x11.XCloseDisplay(display)


class _MonitorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_ulong), ("primary", ctypes.c_int), ("automatic", ctypes.c_int),
                ("noutput", ctypes.c_int), ("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int),
                ("height", ctypes.c_int), ("mwidth", ctypes.c_int), ("mheight", ctypes.c_int),
                ("outputs", ctypes.c_void_p)]


def _xrandr_primary_monitor(display: int, root: int) -> tuple[int, int] | None:
    """With two monitors the X screen spans both; a window should fit one of them."""
    name = ctypes.util.find_library("Xrandr")
    if not name:
        return None
    xrandr = ctypes.CDLL(name)
    xrandr.XRRGetMonitors.restype = ctypes.POINTER(_MonitorInfo)
    xrandr.XRRGetMonitors.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    xrandr.XRRFreeMonitors.argtypes = [ctypes.POINTER(_MonitorInfo)]
    count = ctypes.c_int(0)
    monitors = xrandr.XRRGetMonitors(display, root, 1, ctypes.byref(count))
    if not monitors:
        return None
    try:
        found = [monitors[i] for i in range(count.value)]
        chosen = next((m for m in found if m.primary), found[0] if found else None)
        return (chosen.width, chosen.height) if chosen is not None else None
    finally:
        xrandr.XRRFreeMonitors(monitors)


def _windows_screen() -> tuple[int, int]:
    user32 = ctypes.windll.user32  # type: ignore[attr-defined]
    return user32.GetSystemMetrics(0), user32.GetSystemMetrics(1)  # SM_CXSCREEN, SM_CYSCREEN


def _tk_screen() -> tuple[int, int] | None:
    import tkinter

    root = tkinter.Tk()
    try:
        root.withdraw()
        return root.winfo_screenwidth(), root.winfo_screenheight()
    finally:
        root.destroy()


def point_qt_at_fonts() -> None:
    """Give OpenCV's Qt a font folder that exists, before its first window.

    opencv-python's `cv2/__init__` sets QT_QPA_FONTDIR to cv2/qt/fonts, a folder its wheels do not
    ship, so Qt prints five "QFontDatabase: Cannot find font directory" warnings at the first window.
    The system's font folder is what Qt would use anyway. Where there is none, an empty folder ends
    the search quietly: the overlay is drawn with OpenCV's own Hershey fonts, so Qt needs no fonts.
    """
    current = os.environ.get("QT_QPA_FONTDIR")
    if current and Path(current).is_dir():
        return
    for folder in _FONT_DIRS:
        path = Path(folder).expanduser()
        if path.is_dir():
            os.environ["QT_QPA_FONTDIR"] = str(path)
            return
    empty = Path(tempfile.gettempdir()) / "rtstyle-qt-fonts"
    empty.mkdir(exist_ok=True)
    os.environ["QT_QPA_FONTDIR"] = str(empty)


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
