"""Frame sinks: a video file, a preview window (with keys), nothing (for benchmarks), or several."""

from __future__ import annotations

import logging
import os
import sys
import time
from abc import ABC, abstractmethod
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
                         source_size=size, color=default_color(size[1]))
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
    """An OpenCV HighGUI window. Separate from the preview logic so tests can swap in a fake."""

    def __init__(self, title: str):
        import cv2

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("no display to show a preview on (DISPLAY is not set); record to a file with "
                             "--record OUT.mp4 --no-preview")
        self._cv2 = cv2
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise InputError(f"cannot open a preview window ({str(exc).strip().splitlines()[-1]})") from exc

    def show(self, rgb: np.ndarray) -> int:
        """Show a frame; return the key pressed meanwhile (-1 for none)."""
        self._cv2.imshow(self.title, self._cv2.cvtColor(rgb, self._cv2.COLOR_RGB2BGR))
        return self._cv2.waitKey(1)

    def close(self) -> None:
        self._cv2.destroyWindow(self.title)


class PreviewSink(Sink):
    """Shows the stylized stream with an fps/latency overlay and handles the keys:

    q / Esc quit, n / p next / previous style, [ / ] strength down / up,
    o stylized -> side by side -> original, s save a snapshot PNG.
    """

    KEYS = {ord("q"): "quit", 27: "quit", ord("n"): "next", ord("p"): "previous", ord("["): "weaker",
            ord("]"): "stronger", ord("o"): "view", ord("s"): "snapshot"}

    def __init__(self, controls, metrics, window: Window | None = None, snapshot_dir: Path | None = None,
                 title: str = "rtstyle"):
        self.controls = controls
        self.metrics = metrics
        self.window = window or Window(title)
        self.snapshot_dir = snapshot_dir or Path.cwd()
        self.snapshots: list[Path] = []
        self._last_image: np.ndarray | None = None

    def compose(self, frame: Frame, image: np.ndarray) -> np.ndarray:
        view = self.controls.view
        if view == "original":
            shown = frame.image
        elif view == "side-by-side":
            shown = np.concatenate([frame.image, image], axis=1)
        else:
            shown = image
        return self._overlay(np.ascontiguousarray(shown))

    def _overlay(self, image: np.ndarray) -> np.ndarray:
        import cv2

        style, strength = self.controls.state()
        loading = "" if self.controls.active in (None, (style, strength)) else " (loading)"
        text = (f"{self.metrics.live_fps():5.1f} fps  {self.metrics.last_latency_ms():5.0f} ms  "
                f"{style} x{strength:.1f}{loading}  drops {self.metrics.drops}")
        image = image.copy()
        cv2.putText(image, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        return image

    def write(self, frame: Frame, image: np.ndarray) -> None:
        self._last_image = image
        self.handle_key(self.window.show(self.compose(frame, image)))

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
        elif action == "snapshot" and self._last_image is not None:
            from .images import write_image

            path = self.snapshot_dir / f"rtstyle-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.snapshots)}.png"
            write_image(path, self._last_image)
            self.snapshots.append(path)
            log.info("snapshot saved to %s", path)
        return action

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
