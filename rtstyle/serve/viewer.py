"""One viewer of `rtstyle serve`: the browser's frames in, stylized frames out, with bounded queues.

    browser track --pump--> inbox (newest only) --worker, engine thread--> outbox (newest only) --> track

aiortc decodes every frame the browser sends into an unbounded queue; the pump empties it at once
into a slot that keeps only the newest frame, so a stylizer slower than the camera drops frames
instead of building latency. The worker stylizes the newest frame and leaves the result in a
second one-frame slot, from which aiortc's sender takes it (encoding overlaps the next frame).
Style and strength follow the viewer's own `LiveControls` through a `StyleSwitcher` whose
stylizers come from the shared engine; the smoother is the viewer's own, as it holds its stream's
past.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from ..config import SMOOTH_STRENGTH, SMOOTHERS, check_smooth_strength
from ..errors import InputError
from ..io.color import ColorInfo, color_of
from ..model.styles import MAX_STRENGTH
from ..pipeline.controls import LiveControls, StyleSwitcher
from ..pipeline.faces import FaceStage, parse_faces
from ..pipeline.scale import AUTO, check_scale_setting, enlarge, fitted_scale, shrink
from .engine import SharedEngine
from .stamp import read_stamp, sent_color, strip_rows, write_stamp

log = logging.getLogger(__name__)
CAMERA_FPS = 30  # the rate the page asks the browser's camera for (static/app.js)
T = TypeVar("T")
STRENGTH_STEP = 0.05  # strengths are rounded to this, so a dragged slider builds a few stylizers, not hundreds


class Ended(Exception):
    """The slot was closed: the stream is over."""


class LatestSlot(Generic[T]):
    """A queue of one: `put` replaces an item nobody took yet (and counts it as dropped)."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> None:
        if self._item is not None:
            self.dropped += 1
        self._item = item
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def get(self) -> T:
        while self._item is None:
            if self._closed:
                raise Ended
            self._ready.clear()
            await self._ready.wait()
        item, self._item = self._item, None
        return item


@dataclass
class ViewerOptions:
    """What a viewer asks for: in the offer at first, then over the data channel."""

    style: str
    strength: float = 1.0
    smooth: str = "none"
    smooth_strength: float = SMOOTH_STRENGTH
    stamped: bool = False  # the page paints a frame counter under each frame (stamp.py)
    scale: float | str = AUTO  # stylize at this fraction of the frame's size, or fitted (pipeline/scale.py)
    faces: float = 0.0  # how much of the original comes back in faces, 0..1 (pipeline/faces.py)

    @classmethod
    def parse(cls, message: dict, styles: list[str], defaults: ViewerOptions) -> ViewerOptions:
        """Checked values from a JSON message; missing ones keep `defaults`. Bad ones raise InputError."""
        style = message.get("style", defaults.style)
        if style not in styles:
            raise InputError(f"unknown style {style!r}")
        try:
            strength = float(message.get("strength", defaults.strength))
            smooth_strength = check_smooth_strength(float(message.get("smooth_strength", defaults.smooth_strength)))
        except (TypeError, ValueError):
            raise InputError("strength and smooth_strength must be numbers") from None
        scale = check_scale_setting(message.get("scale", defaults.scale))
        if not 0.0 <= strength <= MAX_STRENGTH:
            raise InputError(f"strength must be between 0 and {MAX_STRENGTH:g}, got {strength:g}")
        smooth = message.get("smooth", defaults.smooth)
        if smooth not in SMOOTHERS:
            raise InputError(f"unknown smoother {smooth!r}; use one of {', '.join(SMOOTHERS)}")
        faces = parse_faces(message.get("faces", defaults.faces))
        return cls(style, round(round(strength / STRENGTH_STEP) * STRENGTH_STEP, 2), smooth, smooth_strength,
                   bool(message.get("stamp", defaults.stamped)), scale, faces)


class ViewerStats:
    """Counts and recent times of one stream, for the page's readout."""

    WINDOW_S = 2.0

    def __init__(self) -> None:
        self.received = 0
        self.stylized = 0
        self._done: deque[float] = deque()
        self._stylize_ms: deque[float] = deque(maxlen=30)

    def add(self, seconds: float) -> None:
        now = time.monotonic()
        self.stylized += 1
        self._done.append(now)
        while self._done and now - self._done[0] > self.WINDOW_S:
            self._done.popleft()
        self._stylize_ms.append(seconds * 1000)

    def fps(self) -> float:
        if len(self._done) < 2:
            return 0.0
        return (len(self._done) - 1) / max(1e-6, self._done[-1] - self._done[0])

    def stylize_ms(self) -> float:
        return float(np.median(self._stylize_ms)) if self._stylize_ms else 0.0


class Viewer:
    """The stream of one browser: its controls, its switcher, its smoother and its two slots."""

    def __init__(self, engine: SharedEngine, styles: list[str], options: ViewerOptions):
        self.engine = engine
        self.styles = styles
        self.options = options
        self.controls = LiveControls(styles=list(styles), style_index=styles.index(options.style),
                                     strength=options.strength)
        self.switcher: StyleSwitcher | None = None
        self._smoother = None
        self._smoother_for: tuple[str, float] | None = None
        self.inbox: LatestSlot[VideoFrame] = LatestSlot()
        self.outbox: LatestSlot[VideoFrame] = LatestSlot()
        self.stats = ViewerStats()
        self.error: str | None = None
        self.color: ColorInfo | None = None  # how the browser made its YUV, once a stamp has said
        self._fitted: dict[tuple[int, int], float] = {}  # --scale auto: the scale fitted per frame size
        self.scale_used = 1.0
        self._faces: FaceStage | None = None  # made when the viewer first asks for faces kept

    def start(self) -> None:
        """Build the first stylizer (blocking: run it off the event loop)."""
        self.switcher = StyleSwitcher(self.controls, self.engine.build)

    def update(self, message: dict) -> None:
        """New controls from the page; the switcher builds a new stylizer in the background if needed."""
        self.options = ViewerOptions.parse(message, self.styles, self.options)
        self.controls.choose(self.options.style, self.options.strength)

    def process(self, frame: VideoFrame) -> VideoFrame:
        """Stylize one frame (on the engine thread), keeping its timestamp and its stamp."""
        started = time.perf_counter()
        image = self._rgb(frame)
        rows = strip_rows(image.shape[0]) if self.options.stamped else 0
        picture = image[: image.shape[0] - rows]
        smoother = self._smoother_now()
        after = None if smoother.passthrough else smoother.apply_batch
        scale = self._scale_for(picture)
        styled = self.switcher.submit(shrink([picture], scale), after).result()
        styled = (enlarge(styled, [picture]) if scale < 1.0 else styled)[0]
        if self.options.faces > 0 or self._faces is not None:
            self._faces = self._faces or FaceStage(self.options.faces, live=True)
            self._faces.strength = self.options.faces  # off: the stage resets, and costs nothing
            styled = self._faces.apply(picture, styled)
        if rows:
            out = np.empty_like(image)
            out[: len(picture)] = styled
            stamp = read_stamp(image)
            if stamp is None:
                out[len(picture):] = image[len(picture):]
            else:
                write_stamp(out[len(picture):], stamp)  # a clean copy: the sent one is blurred by the codec
        else:
            out = styled
        result = VideoFrame.from_ndarray(out, format="rgb24")
        result.pts, result.time_base = frame.pts, frame.time_base
        self.stats.add(time.perf_counter() - started)
        return result

    def _scale_for(self, picture: np.ndarray) -> float:
        """The viewer's scale, or with `auto` the one fitted to this frame size on its first frame (the
        engine timed alone, on the engine thread; other viewers are not counted)."""
        if self.options.scale != AUTO:
            self.scale_used = self.options.scale
        else:
            size = (picture.shape[1], picture.shape[0])
            if size not in self._fitted:
                self._fitted[size], full_ms = fitted_scale(self.switcher, *size, CAMERA_FPS)
                log.info("viewer at %dx%d: scale %.2f (a full-size frame took %.1f ms)", *size, self._fitted[size],
                         full_ms)
            self.scale_used = self._fitted[size]
        return self.scale_used

    def _rgb(self, frame: VideoFrame) -> np.ndarray:
        """The frame in RGB, read with the YUV matrix and range the sender used."""
        if self.options.stamped and frame.format.name == "yuv420p":
            plane = frame.planes[0]
            luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
            self.color = sent_color(luma) or self.color
        color = self.color or color_of(frame, frame.height)
        convert = color.swscale()
        # The right matrix and range, without swscale's exact rounding: that costs about 2 ms a 640x480 frame
        # against 0.2 (measured), and a live stream from a lossy codec has no use for the last level.
        return frame.reformat(format="rgb24", src_colorspace=convert["colorspace"],
                              src_color_range=convert["range"]).to_ndarray()

    def _smoother_now(self):
        wanted = (self.options.smooth, self.options.smooth_strength)
        if self._smoother_for != wanted:
            self._smoother = self.switcher.make_smoother(*wanted)
            self._smoother_for = wanted
        return self._smoother

    async def pump(self, track: MediaStreamTrack) -> None:
        """Take every decoded frame from the browser's track as it comes; keep the newest."""
        try:
            while True:
                self.inbox.put(await track.recv())
                self.stats.received += 1
        except MediaStreamError:
            pass
        finally:
            self.inbox.close()

    async def work(self) -> None:
        """Stylize the newest frame, one at a time, on the shared engine thread."""
        try:
            while True:
                frame = await self.inbox.get()
                self.outbox.put(await self.engine.run(self.process, frame))
        except Ended:
            pass
        except Exception as exc:  # a failed build or engine error ends this stream only, and says why
            log.exception("viewer stream stopped")
            self.error = f"the stream stopped: {exc}"
        finally:
            self.outbox.close()

    def summary(self) -> dict:
        style, strength = self.controls.state()
        showing = self.controls.active or (style, strength)  # differs from the choice while a stylizer builds
        return {"type": "stats", "style": style, "strength": strength,
                "showing": {"style": showing[0], "strength": showing[1]}, "smooth": self.options.smooth,
                "faces": self.options.faces, "scale": self.options.scale, "scale_used": self.scale_used,
                "notice": self.controls.recent_notice(), "fps": round(self.stats.fps(), 2),
                "stylize_ms": round(self.stats.stylize_ms(), 1),
                "received": self.stats.received, "stylized": self.stats.stylized,
                "dropped": self.inbox.dropped + self.outbox.dropped,
                "input_color": self.color.describe() if self.color else None,
                "engine": self.switcher.description if self.switcher else "", "error": self.error}


class StylizedTrack(MediaStreamTrack):
    """What aiortc sends back to the browser: the newest stylized frame, with the input's timestamp."""

    kind = "video"

    def __init__(self, outbox: LatestSlot[VideoFrame]):
        super().__init__()
        self._outbox = outbox

    async def recv(self) -> VideoFrame:
        try:
            return await self._outbox.get()
        except Ended:
            self.stop()
            raise MediaStreamError from None
