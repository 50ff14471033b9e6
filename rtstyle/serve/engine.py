"""The one engine of a `rtstyle serve` process, shared by every viewer.

Stylizers are built once per set of conv weights and shared: every style that differs only in its
norms (the quality model's styles, strengths, pictures) runs on one engine, each viewer's
`StyleView` putting its own style's norms in before its frames. An engine that holds its
style in its graph (TorchScript's frozen graph, --backend jit) is built once per (style, strength).
Every frame of every viewer runs on one engine thread: the engine is never asked to run two frames
at once (on a CPU they would only fight for the cores, on a GPU for the stream), and viewers take
turns, since each waits for its frame before sending the next. How many viewers the engine can serve is decided at the
door (`--max-viewers`), so nobody already watching is slowed by a newcomer.

Because viewers share stylizers, the viewers' StyleSwitchers are given no `restyle` (it would change
the style for everyone on that engine); a new (style, strength) is a new `StyleView`, a numpy
fusion of a millisecond or so, over the shared stylizer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
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

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` on the engine thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


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
