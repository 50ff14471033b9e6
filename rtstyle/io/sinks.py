"""Frame sinks: a video file, a preview window (with keys), nothing (for benchmarks), or several."""

from __future__ import annotations

import logging
import os
import sys
import time
from abc import ABC, abstractmethod
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError
from .color import default_color
from .sources import Frame
from .video import VideoInfo, VideoWriter

log = logging.getLogger(__name__)


class Sink(ABC):
    @abstractmethod
    def write(self, frame: Frame, image: np.ndarray) -> None:
        """`frame` is the input (with its timestamps), `image` its stylized version."""

    def close(self) -> None:
        """Finish normally (flush, finalise)."""
        return None

    def end_early(self) -> None:
        """The stream was stopped before its end (Ctrl-C, SIGTERM); `close` follows."""
        return None

    def abort(self) -> None:
        """Finish after an error: release resources, no flushing."""
        self.close()


class NullSink(Sink):
    def write(self, frame: Frame, image: np.ndarray) -> None:
        return None


class FileSink(Sink):
    def __init__(self, writer: VideoWriter):
        self.writer = writer
        self.layout = writer.layout  # frames as the encoder takes them, where the stylizer can make them

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if frame.alpha is not None and getattr(self.writer, "keeps_alpha", False):
            self.writer.write(image, frame.pts, alpha=frame.alpha)
        else:
            self.writer.write(image, frame.pts)

    def end_early(self) -> None:
        self.writer.end_audio_with_video()

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


class RecordSink(FileSink):
    """A file sink for live sources: timestamps come from capture times (1 ms time base), so the
    recording plays at the pace the frames really arrived, drops included."""

    TIME_BASE = Fraction(1, 1000)

    def __init__(self, path: Path, size: tuple[int, int], fps: float, crf: int = 20):
        info = VideoInfo(path=path, width=size[0], height=size[1], rate=Fraction(fps).limit_denominator(1001),
                         time_base=self.TIME_BASE, frames=0, duration=0.0, rotation=0, audio_streams=0,
                         color=default_color(size[1]))
        super().__init__(VideoWriter(path, info, crf=crf, copy_audio=False))
        self._start: float | None = None

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if self._start is None:
            self._start = frame.captured
        self.writer.write(image, round((frame.captured - self._start) * 1000))


class TeeSink(Sink):
    def __init__(self, *sinks: Sink):
        self.sinks = sinks

    def write(self, frame: Frame, image: np.ndarray) -> None:
        for sink in self.sinks:
            sink.write(frame, image)

    def end_early(self) -> None:
        for sink in self.sinks:
            sink.end_early()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def abort(self) -> None:
        for sink in self.sinks:
            sink.abort()


class Window:
    """The preview window: SDL2 through pygame-ce, so it works whichever OpenCV build is installed
    (rtstyle depends on the headless one). Separate from the preview logic so tests can swap in a fake.

    It opens at the frame's size (scaled down to fit the screen), can be resized with the mouse (the
    picture keeps its aspect, centred on black), goes fullscreen and back, and notices its close button.
    """

    def __init__(self, title: str, size: tuple[int, int] | None = None):
        """`size`: the frames' expected (width, height), so the window opens at its size at once; without
        it the window stays hidden until the first frame says how big it is."""
        from .display import fit_to_screen

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("no display to show a preview on (DISPLAY is not set); record to a file with "
                             "--record OUT.mp4 --no-preview")
        self._pygame = pygame = _import_pygame()
        try:
            pygame.display.init()  # the display alone: no audio, so no sound-system messages
            desktops = pygame.display.get_desktop_sizes()  # the first is the one new windows open on
            self.screen: tuple[int, int] | None = tuple(desktops[0]) if desktops else None
            opening = fit_to_screen(size, self.screen) if size else (640, 480)
            self._window = pygame.Window(title, opening, resizable=True, allow_high_dpi=True, hidden=True)
            # SDL makes a new X window at the first surface: get it now, so the window seen is the final one.
            self._window.get_surface().fill((0, 0, 0))
            if size is not None:
                self._window.show()
                self._window.flip()
        except pygame.error as exc:
            pygame.display.quit()
            raise InputError(f"cannot open a preview window ({str(exc).strip() or 'SDL error'})") from exc
        self.title = title
        self.fullscreen = False
        self.closed = False
        self._normal: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), opening)  # position and size, windowed
        self._shape: tuple[int, int] | None = (size[1], size[0]) if size else None  # (height, width) fitted to
        self._keys: deque[int] = deque()

    def fit(self, shape: tuple[int, ...]) -> None:
        """Size the window for pictures of `shape`, when that changes (the first frame, side by side)."""
        from .display import fit_to_screen

        if self._shape == tuple(shape[:2]) or self.fullscreen or self.closed:
            return
        self._shape = (shape[0], shape[1])
        window = self._window
        window.size = size = fit_to_screen((shape[1], shape[0]), self.screen)
        if self.screen is not None:  # grown (side by side): moved back onto the screen where it would stick out
            x, y = window.position
            window.position = (max(0, min(x, self.screen[0] - size[0])), max(0, min(y, self.screen[1] - size[1])))
        window.show()

    def display_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The size (width, height) in pixels pictures of `shape` are shown at now, aspect kept (on a
        HiDPI screen the window's pixels outnumber its points)."""
        width, height = self._window.get_surface().get_size() if not self.closed else (0, 0)
        if width <= 0 or height <= 0:
            return shape[1], shape[0]
        scale = min(width / shape[1], height / shape[0])
        return max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale))

    def show(self, rgb: np.ndarray) -> int:
        """Show a frame, centred; return a key pressed since the last call (-1 for none)."""
        self._events()
        if self.closed:
            return self._keys.popleft() if self._keys else -1
        pygame = self._pygame
        if rgb.dtype != np.uint8:
            rgb = (rgb >> 8).astype(np.uint8)
        rgb = np.ascontiguousarray(rgb)
        surface = self._window.get_surface()
        width, height = surface.get_size()
        x, y = (width - rgb.shape[1]) // 2, (height - rgb.shape[0]) // 2
        if x > 0 or y > 0:
            surface.fill((0, 0, 0))
        surface.blit(pygame.image.frombuffer(rgb, (rgb.shape[1], rgb.shape[0]), "RGB"), (x, y))
        self._window.flip()
        return self._keys.popleft() if self._keys else -1

    def _events(self) -> None:
        """Keys as character codes (what the key types, so Shift, Caps Lock and the keyboard's layout count;
        Esc is 27), and the close button (a window manager's close, Alt+F4)."""
        pygame = self._pygame
        for event in pygame.event.get():
            if event.type in (pygame.QUIT, pygame.WINDOWCLOSE):
                self.closed = True
            elif event.type == pygame.KEYDOWN:
                typed = event.unicode if len(event.unicode) == 1 else ""
                code = ord(typed) if typed else (event.key if event.key < 256 else -1)
                if code >= 0:
                    self._keys.append(code)

    def toggle_fullscreen(self) -> None:
        window = self._window
        if window is None:
            return
        self.fullscreen = not self.fullscreen
        if self.fullscreen:
            self._normal = window.position, window.size
            if self.screen is not None:
                # SDL asks the window manager for fullscreen; with none (a bare X server, a kiosk)
                # nothing would happen, so the window also covers the screen by itself.
                window.borderless = True
                window.position, window.size = (0, 0), self.screen
            window.set_fullscreen(desktop=True)  # the desktop's mode: no change of video mode
        else:
            window.set_windowed()
            window.borderless = False
            window.size, window.position = self._normal[1], self._normal[0]

    def close(self) -> None:
        if getattr(self, "_window", None) is not None:
            self._window.destroy()
            self._window = None
            self._pygame.display.quit()
        self.closed = True


def _import_pygame():
    """pygame-ce, without the banner it prints at import (the CLI owns the terminal)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_VIDEO_X11_WMCLASS", "rtstyle")  # pygame's import sets the script's name else
    try:
        import pygame
    except ImportError:
        raise InputError("the preview window needs pygame-ce: pip install 'rtstyle[live]', or run without it: "
                         "--no-preview with --virtual-cam or --record") from None
    if not hasattr(pygame, "Window"):  # the original pygame, or pygame-ce before 2.5: no pygame.Window
        raise InputError("the preview window needs pygame-ce 2.5 or later (pip install 'rtstyle[live]'; "
                         "pygame and pygame-ce cannot both be installed)")
    return pygame


PREVIEW_KEYS = (
    # (keys, action, what the help overlay says)
    (("q", "Esc"), "quit", "quit (or close the window)"),
    (("n",), "next", "next style"),
    (("p",), "previous", "previous style"),
    (("[", "]"), "strength", "weaker / stronger style"),
    (("o",), "view", "stylized / side by side / original"),
    (("m",), "mirror", "mirror the preview"),
    (("k",), "faces", "faces stylized / soft / kept"),
    (("f",), "fullscreen", "fullscreen on / off"),
    (("s",), "snapshot", "save a snapshot PNG"),
    (("h",), "help", "show / hide this help"),
)


def _key_codes() -> dict[int, str]:
    codes = {27: "quit", ord("["): "weaker", ord("]"): "stronger"}
    for keys, action, _ in PREVIEW_KEYS:
        for key in keys:
            if len(key) == 1 and key.isalpha():
                codes[ord(key)] = codes[ord(key.upper())] = action  # Caps Lock or Shift held
    return codes


class PreviewSink(Sink):
    """Shows the stylized stream with an fps/latency overlay and handles the keys of PREVIEW_KEYS:

    q / Esc (or the window's close button) quit, n / p next / previous style, [ / ] strength down / up,
    o stylized -> side by side -> original, m mirror, k faces off -> soft -> kept (with a face stage),
    f fullscreen, s save a snapshot PNG, h help.
    Mirroring is for the preview only (a self-view); snapshots and other sinks get the picture as is.
    """

    KEYS = _key_codes()

    def __init__(self, controls, metrics, window: Window | None = None, snapshot_dir: Path | None = None,
                 title: str = "rtstyle", faces=None):
        """`faces`: the stream's face stage (pipeline/faces.py), which the k key turns off, soft or kept."""
        self.controls = controls
        self.faces = faces
        self.metrics = metrics
        self.window = window or Window(title)
        self.snapshot_dir = snapshot_dir or Path.cwd()
        self.snapshots: list[Path] = []
        self.mirror = False
        self.help = False
        self._last_image: np.ndarray | None = None

    def compose(self, frame: Frame, image: np.ndarray) -> np.ndarray:
        view = self.controls.view
        pictures = {"original": [frame.image], "side-by-side": [frame.image, image]}.get(view, [image])
        if self.mirror:
            pictures = [picture[:, ::-1] for picture in pictures]  # each half, so the original stays left
        shown = np.concatenate(pictures, axis=1) if len(pictures) > 1 else pictures[0]
        shown = self._at_display_size(shown)
        below = self._overlay(shown)
        if self.help:
            self._help(shown, below)
        return shown

    def _at_display_size(self, picture: np.ndarray) -> np.ndarray:
        """The picture scaled here to the size it is shown at, so the text drawn on it next is drawn at the
        screen's resolution: sharp and as tall as meant in a small window or fullscreen alike."""
        import cv2

        window = self.window
        if not hasattr(window, "display_size"):  # a stand-in window shows pictures as they are
            return picture.copy()
        window.fit(picture.shape)
        width, height = window.display_size(picture.shape)
        if (width, height) == (picture.shape[1], picture.shape[0]):
            return picture.copy()
        smaller = width < picture.shape[1]
        return cv2.resize(np.ascontiguousarray(picture), (width, height),
                          interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)

    def _overlay(self, image: np.ndarray) -> int:
        """The fps / latency / style lines at the top; returns the first row below them."""
        from .display import line_height, put_outlined, text_scale

        style, strength = self.controls.state()
        loading = "" if self.controls.active in (None, (style, strength)) else " (loading)"
        size = f"  at {self.metrics.scale:g}x" if self.metrics.scale < 1 else ""
        faces = f"  {self.faces.describe()}" if self.faces is not None and self.faces.describe() else ""
        lines = [f"{self.metrics.live_fps():.1f} fps  {self.metrics.last_latency_ms():.0f} ms  "
                 f"drops {self.metrics.drops}{size}", f"{style} x{strength:.1f}{loading}{faces}   h: help"]
        notice = self.controls.recent_notice()
        if notice:  # a style left out, for a few seconds; short, so the text above keeps its size
            lines.append(notice if len(notice) <= 48 else notice[:47] + "...")
        scale = text_scale(image.shape[0], lines, image.shape[1])
        step = line_height(scale)
        for row, line in enumerate(lines):
            put_outlined(image, line, (round(8 * scale / 0.55), step * (row + 1)), scale)
        return step * len(lines) + step // 2

    def _help(self, image: np.ndarray, top: int) -> None:
        """Every key and what it does, in two columns on a darkened panel below row `top`."""
        from .display import line_height, put_outlined, text_scale, text_width

        rows = [("Keys", "")] + [(" / ".join(keys), text) for keys, _, text in PREVIEW_KEYS]
        height, width = image.shape[:2]
        # Sized as if each row were one line with a gap of four letters between its columns.
        scale = text_scale(height, [f"{keys}MMMM{text}" for keys, text in rows], round(width * 0.85))
        room = max(1, height - top)
        scale = min(scale, scale * room / (line_height(scale) * (len(rows) + 0.8)))  # and the height below `top`
        step = line_height(scale)
        panel_height = round(step * (len(rows) + 0.6))
        top += max(0, (room - panel_height) // 2)
        panel = image[top:top + panel_height, round(width * 0.03):round(width * 0.97)]
        panel[:] = (panel * 0.3).astype(image.dtype)
        left = round(width * 0.06)
        second = left + max(text_width(keys, scale) for keys, _ in rows) + text_width("MM", scale)
        for row, (keys, text) in enumerate(rows):
            baseline = top + step * (row + 1)
            put_outlined(image, keys, (left, baseline), scale)
            if text:
                put_outlined(image, text, (second, baseline), scale)

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if getattr(self.window, "closed", False):
            return  # closed with its close button: the stream is stopping
        self._last_image = image
        self.handle_key(self.window.show(self.compose(frame, image)))
        if getattr(self.window, "closed", False):
            self.controls.quit.set()  # the close button quits like q

    def handle_key(self, key: int) -> str | None:
        action = self.KEYS.get(key & 0xFF) if key >= 0 else None
        if action == "quit":
            self.controls.quit.set()
        elif action in ("next", "previous"):
            self.controls.next_style(1 if action == "next" else -1)
        elif action in ("weaker", "stronger"):
            self.controls.change_strength(0.1 if action == "stronger" else -0.1)
        elif action == "view":
            self.controls.cycle_view()
        elif action == "mirror":
            self.mirror = not self.mirror
        elif action == "faces" and self.faces is not None:
            self.faces.cycle()
        elif action == "help":
            self.help = not self.help
        elif action == "fullscreen" and hasattr(self.window, "toggle_fullscreen"):
            self.window.toggle_fullscreen()
        elif action == "snapshot" and self._last_image is not None:
            self._snapshot(self._last_image)
        return action

    def _snapshot(self, image: np.ndarray) -> None:
        from .images import write_image

        path = self.snapshot_dir / f"rtstyle-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.snapshots)}.png"
        write_image(path, image)
        self.snapshots.append(path)
        log.info("snapshot saved to %s", path)

    def close(self) -> None:
        self.window.close()


class VirtualCameraSink(Sink):
    """The stylized stream as a camera other programs can open (Zoom, Meet, Teams, Discord, OBS),
    through pyvirtualcam: v4l2loopback on Linux, OBS Virtual Camera on Windows and macOS.

    Frames go out unmirrored by default, as a real camera sends them: call apps mirror only their own
    self-view, so a mirrored feed would reach the other side as mirror writing. `mirror=True` flips it.
    """

    def __init__(self, size: tuple[int, int], fps: float, device: str | None = None, mirror: bool = False):
        try:
            import pyvirtualcam
        except ImportError:
            raise InputError("a virtual camera needs pyvirtualcam: pip install 'rtstyle[live]'") from None
        self.mirror = mirror
        try:
            self.camera = pyvirtualcam.Camera(size[0], size[1], fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                              device=device or None)
        except Exception as exc:  # pyvirtualcam says what is missing in RuntimeErrors of its own wording
            raise InputError(f"no virtual camera: {_virtual_camera_hint(str(exc))}") from None
        self.device = getattr(self.camera, "device", device or "")
        log.info("virtual camera %s: %dx%d at %g fps", self.device, size[0], size[1], fps)

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if image.dtype != np.uint8:
            image = (image >> 8).astype(np.uint8)
        self.camera.send(np.ascontiguousarray(image[:, ::-1] if self.mirror else image))

    def close(self) -> None:
        self.camera.close()


def _virtual_camera_hint(error: str) -> str:
    if sys.platform.startswith("linux"):
        return (f"{error.strip().splitlines()[0] if error.strip() else 'no device'}; for a v4l2loopback device: "
                "sudo modprobe v4l2loopback exclusive_caps=1 card_label=rtstyle")
    return f"{error.strip() or 'no backend'}; install OBS Studio and start its Virtual Camera once"
