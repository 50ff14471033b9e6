"""One viewer of `rtstyle serve`: the browser's frames in, stylized frames out, with bounded queues.

    browser track --pump--> inbox (newest only) --worker, engine thread--> outbox (newest only) --> track

aiortc decodes every frame the browser sends into an unbounded queue; the pump empties it at once
into a slot that keeps only the newest frame, so a stylizer slower than the camera drops frames
instead of building latency. The worker stylizes the newest frame and leaves the result in a
second one-frame slot, from which aiortc's sender takes it (encoding overlaps the next frame).
Style and strength follow the viewer's own `LiveControls` through a `StyleSwitcher` whose
stylizers come from the shared engine; the smoother is the viewer's own, as it holds its stream's
past.

A viewer is one of several on one engine, so it is held to its share: it takes its turns on the
engine like the others (engine.Turns), at most MAX_FPS frames a second, at most MAX_STYLIZED_PIXELS
a frame (a bigger frame is stylized smaller, like --scale), and a new frame size only SHAPE_HOLD_S
after the last (frames of another size in between are dropped), since each new size costs the
engine a re-plan; the hold doubles for a viewer that keeps changing. Data-channel messages are
checked (`read_message`); a bad one is ignored and counted, and never reaches aiortc's transport,
which an exception there would stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from ..config import SMOOTH_STRENGTH, SMOOTHERS, check_smooth_strength, parse_faces
from ..errors import InputError
from ..io.color import ColorInfo, color_of
from ..live.controls import LiveControls, StyleSwitcher
from ..model.styles import MAX_STRENGTH
from ..pipeline.faces import FaceStage
from ..pipeline.scale import AUTO, FRAME_SHARE, check_scale_setting, enlarge, fitted_scale, scale_to_fit, shrink
from .engine import SharedEngine
from .stamp import read_stamp, sent_color, strip_rows, write_stamp

log = logging.getLogger(__name__)
CAMERA_FPS = 30  # the rate the page asks the browser's camera for (static/app.js)
T = TypeVar("T")
STRENGTH_STEP = 0.05  # strengths are rounded to this, so a dragged slider builds a few stylizers, not hundreds
MAX_FPS = 40  # frames of one viewer stylized a second at most: the page's camera sends 30, with jitter
MAX_STYLIZED_PIXELS = 1920 * 1088  # the page sends 1280x720 at most; a frame's turn is not interrupted
SHAPE_HOLD_S = 1.0  # after a change of frame size, frames of another size are dropped for this long,
SHAPE_HOLD_MAX_S = 16.0  # doubled for each change that comes sooner than SHAPE_CALM_S after the last,
SHAPE_CALM_S = 10.0  # and back to SHAPE_HOLD_S after a size held this long
FITTED_KEEP = 8  # --scale auto: fitted scales kept per viewer, by frame size
MESSAGE_MAX_CHARS = 4096  # a controls message is about 120
_NUMBER = (int, float)
MAX_NUMBER = 1e9  # beyond any control's range, and within a float's
MESSAGE_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ping": {"type": str, "id": int},
    "controls": {"type": str, "style": str, "strength": _NUMBER, "smooth": str, "smooth_strength": _NUMBER,
                 "scale": (int, float, str), "stamp": bool, "faces": (int, float, str)},
}


class BadMessage(ValueError):
    """A data-channel message that is not one the page sends."""


def json_object(text: str, error: type[Exception]) -> dict:
    """`text` as a JSON object, or `error` saying why not (never a RecursionError or a traceback)."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser's stack
        raise error("not JSON") from None
    if not isinstance(message, dict):
        raise error("not a JSON object")
    return message


def read_message(data) -> dict:
    """A data-channel message as a dict of the fields its type has, with their JSON types; BadMessage if not."""
    if not isinstance(data, str):
        raise BadMessage("not text")
    if len(data) > MESSAGE_MAX_CHARS:
        raise BadMessage(f"{len(data)} characters, more than {MESSAGE_MAX_CHARS}")
    message = json_object(data, BadMessage)
    fields = MESSAGE_FIELDS.get(message.get("type")) if isinstance(message.get("type"), str) else None
    if fields is None:
        raise BadMessage(f"unknown type {str(message.get('type'))[:40]!r}")
    check_fields(message, fields)
    return message


def check_fields(message: dict, fields: dict[str, type | tuple[type, ...]]) -> None:
    """BadMessage unless every key of `message` is one of `fields`, with a value of its JSON type."""
    for key, value in message.items():
        if key not in fields:
            raise BadMessage(f"unknown key {key[:40]!r}")
        wanted = fields[key]
        if isinstance(value, bool) != (wanted is bool) or not isinstance(value, wanted):  # JSON true is no number
            raise BadMessage(f"{key} is a {type(value).__name__}")
        if isinstance(value, int | float) and not abs(value) <= MAX_NUMBER:  # NaN fails too; 10**400 is no float
            raise BadMessage(f"{key} is out of range")


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
        self.bad_messages = 0  # data-channel messages ignored: not what the page sends, or values refused
        self.size_changes = 0
        self.size_dropped = 0  # frames of a new size that came too soon after the last change
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
        self._fitted: OrderedDict[tuple[int, int], float] = OrderedDict()  # --scale auto: fitted, by frame size
        self._ms_per_pixel: float | None = None  # of a full-size frame, timed on the first one (--scale auto)
        self.scale_used = 1.0
        self._size: tuple[int, int] | None = None  # the frame size being stylized, and since when
        self._size_since = 0.0
        self._size_hold = SHAPE_HOLD_S
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
        """The viewer's scale, or with `auto` the one fitted to its frames: on its first frame the engine is
        timed at that size (alone, on the engine thread; other viewers are not counted); a later size is
        given the time per pixel measured then, as the fit itself takes time to go with the pixels. Timing
        again would stall every viewer for four full-size frames at each new size. (A first frame smaller than
        the later ones makes the estimate cautious: a network's fixed cost per frame is counted per pixel.)
        Whatever the scale, no more than MAX_STYLIZED_PIXELS are stylized."""
        if self.options.scale != AUTO:
            self.scale_used = self.options.scale
        else:
            size = (picture.shape[1], picture.shape[0])
            if size not in self._fitted:
                if self._ms_per_pixel is None:
                    self._fitted[size], full_ms = fitted_scale(self.switcher, *size, CAMERA_FPS)
                    self._ms_per_pixel = full_ms / (size[0] * size[1])
                else:
                    full_ms = self._ms_per_pixel * size[0] * size[1]
                    self._fitted[size] = scale_to_fit(1.0, FRAME_SHARE / CAMERA_FPS / (full_ms / 1000))
                log.info("viewer at %dx%d: scale %.2f (a full-size frame takes %.1f ms)", *size, self._fitted[size],
                         full_ms)
                if len(self._fitted) > FITTED_KEEP:
                    self._fitted.popitem(last=False)
            self._fitted.move_to_end(size)
            self.scale_used = self._fitted[size]
        pixels = picture.shape[0] * picture.shape[1]
        if pixels * self.scale_used**2 > MAX_STYLIZED_PIXELS:
            self.scale_used = math.floor(math.sqrt(MAX_STYLIZED_PIXELS / pixels) * 100) / 100
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
        """Stylize the newest frame, one at a time, in this viewer's turns on the shared engine thread."""
        next_turn = 0.0
        try:
            while True:
                await asyncio.sleep(max(0.0, next_turn - time.monotonic()))  # MAX_FPS: waits only if sent faster
                frame = await self.inbox.get()
                if not self._size_allowed(frame.width, frame.height):
                    continue
                next_turn = time.monotonic() + 1.0 / MAX_FPS
                self.outbox.put(await self.engine.run(self.process, frame, turn=self))
        except Ended:
            pass
        except Exception as exc:  # a failed build or engine error ends this stream only, and says why
            log.exception("viewer stream stopped")
            self.error = f"the stream stopped: {exc}"
        finally:
            self.engine.turns.forget(self)
            self.outbox.close()

    def _size_allowed(self, width: int, height: int) -> bool:
        """Whether a frame of this size is stylized now: a new size only SHAPE_HOLD_S after the last change."""
        if (width, height) == self._size:
            return True
        now = time.monotonic()
        if self._size is not None:
            held = now - self._size_since
            if held < self._size_hold:
                self.stats.size_dropped += 1
                return False
            self._size_hold = SHAPE_HOLD_S if held >= SHAPE_CALM_S else min(SHAPE_HOLD_MAX_S, 2 * self._size_hold)
            self.stats.size_changes += 1
            log.debug("viewer frames now %dx%d (were %dx%d)", width, height, *self._size)
        self._size, self._size_since = (width, height), now
        return True

    def summary(self) -> dict:
        style, strength = self.controls.state()
        showing = self.controls.active or (style, strength)  # differs from the choice while a stylizer builds
        return {"type": "stats", "style": style, "strength": strength,
                "showing": {"style": showing[0], "strength": showing[1]}, "smooth": self.options.smooth,
                "faces": self.options.faces, "scale": self.options.scale, "scale_used": self.scale_used,
                "notice": self.controls.recent_notice(), "fps": round(self.stats.fps(), 2),
                "stylize_ms": round(self.stats.stylize_ms(), 1),
                "received": self.stats.received, "stylized": self.stats.stylized,
                "dropped": self.inbox.dropped + self.outbox.dropped, "size_changes": self.stats.size_changes,
                "size_dropped": self.stats.size_dropped, "bad_messages": self.stats.bad_messages,
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
