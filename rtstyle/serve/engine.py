"""The one engine of a `rtstyle serve` process, shared by every viewer.

Stylizers are built once per set of conv weights and shared: every style that differs only in its
norms (the quality model's styles, strengths, pictures) runs on one engine, each viewer's
`StyleView` putting its own style's norms in before its frames. An engine that holds its
style in its graph (TorchScript's frozen graph, --backend jit) is built once per (style, strength).
Every frame of every viewer runs on one engine thread: the engine is never asked to run two frames
at once (on a CPU they would only fight for the cores, on a GPU for the stream). Viewers take turns
(`Turns`): the next frame is the waiting viewer's that has had the least engine time, so a viewer whose frames cost
more (a bigger size, a new size every frame, a scale being fitted) waits longer and nobody else
does. How many viewers the engine can serve is decided at the door (`--max-viewers`), so nobody
already watching is slowed by a newcomer.

Because viewers share stylizers, the viewers' StyleSwitchers are given no `restyle` (it would change
the style for everyone on that engine); a new (style, strength) is a new `StyleView`, a numpy
fusion of a millisecond or so, over the shared stylizer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..config import EngineConfig
from ..model.styles import StyleChoice
from ..stylizers.base import Stylizer

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Viewers served at once when --max-viewers is not given: a CPU runs the fast model at 640x480 at
#: about 14 fps on 2 cores, which one viewer already uses up; a GPU has room for several.
DEFAULT_VIEWERS_CPU = 1
DEFAULT_VIEWERS_GPU = 4
THUMB_SIZE = (192, 144)


class SharedEngine:
    """Built stylizers by (style, strength), and the thread every frame is stylized on."""

    KEEP = 16  # stylizers kept across viewers; each viewer's StyleSwitcher keeps its own few too

    def __init__(self, model: str | Path, engine: EngineConfig):
        self.model = model
        self.engine = engine
        self._built: OrderedDict[tuple[str, float], Stylizer] = OrderedDict()
        self._lock = threading.Lock()  # one build at a time: two viewers asking for one style build it once
        self._painting: dict[int, StyleView] = {}  # id(shared stylizer) -> the view whose norms it holds
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rtstyle-engine")
        self.turns = Turns()

    def build(self, style: str, strength: float) -> Stylizer:
        """The stylizer for one style at one strength (what StyleSwitcher calls, from any thread)."""
        from ..stylizers.factory import fused_style, load_stylizer

        choice = StyleChoice({style: 1.0}, round(strength, 2))
        fused = fused_style(self.model, choice)
        with self._lock:
            for key in (fused.conv_key, (style, choice.strength)):
                if key in self._built:
                    self._built.move_to_end(key)
                    return StyleView(self._built[key], fused.norms, choice, self._painting)
            stylizer = load_stylizer(self.model, choice, self.engine)
            self._built[fused.conv_key if stylizer.conv_key else (style, choice.strength)] = stylizer
            if len(self._built) > self.KEEP:
                self._built.popitem(last=False)
            return StyleView(stylizer, fused.norms, choice, self._painting)

    @staticmethod
    def on_gpu(stylizer: Stylizer) -> bool:
        device = getattr(stylizer, "device", None)  # torch stylizers have one; the lean CPU path has none
        return getattr(device, "type", None) == "cuda"

    async def run(self, work: Callable[..., T], *args: Any, turn: Hashable | None = None) -> T:
        """`work(*args)` on the engine thread; with `turn` (a viewer) when it is that viewer's turn, the time it
        takes charged to it."""
        loop = asyncio.get_running_loop()
        if turn is None:
            return await loop.run_in_executor(self._thread, work, *args)
        await self.turns.acquire(turn)
        started = time.perf_counter()
        try:
            return await loop.run_in_executor(self._thread, work, *args)
        finally:
            self.turns.release(turn, time.perf_counter() - started)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


class Turns:
    """Whose frame runs next on the engine: of the viewers waiting, the one charged the least engine time.

    Used on the event loop only (no locks). A viewer that arrives starts level with the least-charged
    viewer present. One that comes back after AWAY_S without a turn (its camera paused, its tab hidden)
    and is charged less than the others by more than CREDIT_S is brought up to that: it goes first, but
    cannot hold the engine for long with time it did not use. A viewer that was only waiting (for its
    next camera frame, or behind another's long turn) keeps what it is owed. With viewers whose frames
    cost the same this is plain round-robin.
    """

    CREDIT_S = 0.25
    AWAY_S = 0.5

    def __init__(self) -> None:
        self.used: dict[Hashable, float] = {}  # engine seconds charged, by viewer
        self._waiting: list[tuple[Hashable, asyncio.Future]] = []
        self._held = False
        self._last_turn: dict[Hashable, float] = {}  # when each viewer's last turn ended

    async def acquire(self, key: Hashable) -> None:
        others = [used for other, used in self.used.items() if other != key]
        if key not in self.used:
            self.used[key] = min(others, default=0.0)
        elif others and time.monotonic() - self._last_turn.get(key, 0.0) > self.AWAY_S:
            self.used[key] = max(self.used[key], min(others) - self.CREDIT_S)
        if not self._held and not self._waiting:
            self._held = True
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # given the turn, then cancelled before taking it
                self.release(key, 0.0)
            else:
                self._waiting = [entry for entry in self._waiting if entry[1] is not future]
            raise

    def release(self, key: Hashable, seconds: float) -> None:
        self.used[key] = self.used.get(key, 0.0) + seconds
        self._last_turn[key] = time.monotonic()
        self._held = False
        while self._waiting:
            entry = min(self._waiting, key=lambda waiting: self.used.get(waiting[0], 0.0))  # ties: first come
            self._waiting.remove(entry)
            if not entry[1].done():  # a cancelled waiter is skipped
                self._held = True
                entry[1].set_result(None)
                return

    def forget(self, key: Hashable) -> None:
        """A viewer has left."""
        self.used.pop(key, None)
        self._last_turn.pop(key, None)


class StyleView:
    """One viewer's style on a stylizer that viewers share.

    The style's norm parameters go in before this view's batches whenever another view's were put in
    since (on a GPU that is a copy to the device, so not on every frame); every frame runs on the
    engine thread, so no other view's frame comes between putting them in and running.
    """

    def __init__(self, stylizer: Stylizer, norms: dict[str, np.ndarray], choice: StyleChoice,
                 painting: dict[int, StyleView]):
        self.stylizer = stylizer
        self.norms = norms if stylizer.conv_key else None  # an engine that bakes the style in is this style
        self._painting = painting
        name, weight = next(iter(choice.weights().items()))
        self.description = f"{Path(name).name} {weight:.2f}, {stylizer.describe()}"

    def submit(self, images: list[np.ndarray], after=None, layout: str = "rgb24"):
        if self.norms is not None and self._painting.get(id(self.stylizer)) is not self:
            self.stylizer.set_norms(self.norms)
            self._painting[id(self.stylizer)] = self
        return self.stylizer.submit(images, after, layout)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.submit(images).result()

    def __getattr__(self, name: str):
        return getattr(self.stylizer, name)  # warm_up, make_smoother, device, ...


class Thumbnails:
    """A small picture of each style, made once per process from the built-in synthetic scene.

    Made on the CPU through ONNX Runtime on one thread whatever the engine is: 26 styles take about
    a second there, where 26 TensorRT builds would take many minutes. The network, the fused
    weights and the style are the engine's own, so the thumbnail shows what the stream will.
    """

    def __init__(self, model: str | Path, styles: list[str], engine: EngineConfig):
        self.model = model
        self._engine = replace(engine, backend="onnx", device="cpu", precision="fp32", threads=1)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rtstyle-thumbs")
        self._jobs: dict[str, Future[bytes]] = {name: self._thread.submit(self._make, name) for name in styles}

    def _make(self, style: str) -> bytes:
        import cv2

        from ..io.synthetic import scene_frame
        from ..stylizers.factory import load_stylizer

        scene = scene_frame(45, *THUMB_SIZE)
        stylizer = load_stylizer(self.model, StyleChoice({style: 1.0}), self._engine)
        picture = np.ascontiguousarray(stylizer([scene])[0][..., ::-1])  # RGB -> BGR for OpenCV
        ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise RuntimeError(f"could not encode the thumbnail of {style}")
        return jpeg.tobytes()

    def get(self, style: str) -> Future[bytes] | None:
        return self._jobs.get(style)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
