"""Which cameras there are: index, name and the sizes each can give, for `rtstyle cameras` and `--camera NAME`.

On Linux the V4L2 devices (/dev/video*) are asked directly through their ioctls: the capture
capability, the card name, and the discrete frame sizes of each pixel format; no extra tools.
Elsewhere OpenCV's first few indices are opened to see which answer (no names there).
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

# ioctl request numbers (linux/videodev2.h): _IOR('V', 0, 104 bytes), _IOWR('V', 2, 64), _IOWR('V', 74, 44).
VIDIOC_QUERYCAP, VIDIOC_ENUM_FMT, VIDIOC_ENUM_FRAMESIZES = 0x80685600, 0xC0405602, 0xC02C564A
CAP_VIDEO_CAPTURE, CAP_DEVICE_CAPS = 0x00000001, 0x80000000
BUF_TYPE_VIDEO_CAPTURE, FRMSIZE_TYPE_DISCRETE = 1, 1


@dataclass
class Camera:
    index: int
    name: str
    path: str = ""
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height), largest first


def parse_capability(raw: bytes) -> tuple[str, bool]:
    """(card name, can capture video) from a struct v4l2_capability."""
    _driver, card, _bus, _version, capabilities, device_caps = struct.unpack_from("16s32s32sIII", raw)
    caps = device_caps if capabilities & CAP_DEVICE_CAPS else capabilities
    return card.split(b"\0", 1)[0].decode(errors="replace"), bool(caps & CAP_VIDEO_CAPTURE)


def _frame_sizes(fd: int) -> list[tuple[int, int]]:
    import fcntl  # Linux only, like V4L2

    sizes: set[tuple[int, int]] = set()
    for format_index in range(64):
        request = bytearray(struct.pack("III32sII3I", format_index, BUF_TYPE_VIDEO_CAPTURE, 0, b"", 0, 0, 0, 0, 0))
        try:
            fcntl.ioctl(fd, VIDIOC_ENUM_FMT, request)
        except OSError:
            break
        pixel_format = struct.unpack_from("I", request, 44)[0]
        for size_index in range(256):
            probe = bytearray(struct.pack("III6I2I", size_index, pixel_format, 0, *([0] * 8)))
            try:
                fcntl.ioctl(fd, VIDIOC_ENUM_FRAMESIZES, probe)
            except OSError:
                break
            kind, width, height = struct.unpack_from("III", probe, 8)
            if kind != FRMSIZE_TYPE_DISCRETE:
                break  # stepwise or continuous: a range, not a list
            sizes.add((width, height))
    return sorted(sizes, key=lambda s: (s[0] * s[1], s[0]), reverse=True)


def _v4l2_cameras(devices: Path) -> list[Camera]:
    import fcntl

    cameras = []
    for path in sorted(devices.glob("video*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 1 << 30):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            raw = bytearray(104)
            fcntl.ioctl(fd, VIDIOC_QUERYCAP, raw)
            name, captures = parse_capability(bytes(raw))
            if captures and path.name[5:].isdigit():  # metadata-only nodes are not cameras
                cameras.append(Camera(int(path.name[5:]), name, str(path), _frame_sizes(fd)))
        except OSError:
            continue
        finally:
            os.close(fd)
    return cameras


def _opencv_cameras(limit: int = 5) -> list[Camera]:
    import cv2

    found = []
    previous = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        for index in range(limit):
            capture = cv2.VideoCapture(index)
            if capture.isOpened():
                size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
                found.append(Camera(index, f"camera {index}", sizes=[size] if all(size) else []))
            capture.release()
    finally:
        cv2.utils.logging.setLogLevel(previous)
    return found


def list_cameras(devices: Path = Path("/dev")) -> list[Camera]:
    if sys.platform.startswith("linux"):
        return _v4l2_cameras(devices)
    return _opencv_cameras()


def resolve_camera(text: str, cameras: list[Camera] | None = None) -> int | str:
    """`--camera`: an index, a device path or URL as given, or a camera's name (or a unique part of it)."""
    if text.isdigit():
        return int(text)
    if "/" in text or "://" in text:
        return text
    cameras = list_cameras() if cameras is None else cameras
    matches = [c for c in cameras if c.name == text] or [c for c in cameras if text.lower() in c.name.lower()]
    if len(matches) == 1:
        return matches[0].index
    known = ", ".join(f"{c.index}: {c.name}" for c in cameras) or "none found"
    if not matches:
        raise InputError(f"no camera named {text!r} (cameras: {known})")
    raise InputError(f"{text!r} names more than one camera ({known}); give its index")
