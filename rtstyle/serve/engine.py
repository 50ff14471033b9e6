"""The one engine of a `rtstyle serve` process, shared by every viewer.

Stylizers are built once per (style, strength) and shared, so a second viewer who picks a style
the first already uses costs nothing. Every frame of every viewer runs on one engine thread: the
engine is never asked to run two frames at once (on a CPU they would only fight for the cores, on
a GPU for the stream), and viewers take turns, since each waits for its frame before sending the
next. How many viewers the engine can serve is decided at the door (`--max-viewers`), so nobody
already watching is slowed by a newcomer.

Because viewers share stylizers, nothing here may change one in place: the viewers' StyleSwitchers
are given no `restyle`, and a new (style, strength) is a new stylizer from the cache.
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
from ..pipeline.pending import Stylizer

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
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rtstyle-engine")

    def build(self, style: str, strength: float) -> Stylizer:
        """The stylizer for one style at one strength (what StyleSwitcher calls, from any thread)."""
        from ..api import load_stylizer

        key = (style, round(strength, 2))
        with self._lock:
            if key in self._built:
                self._built.move_to_end(key)
                return self._built[key]
            stylizer = load_stylizer(self.model, StyleChoice({style: 1.0}, key[1]), self.engine)
            self._built[key] = stylizer
            if len(self._built) > self.KEEP:
                self._built.popitem(last=False)
            return stylizer

    @staticmethod
    def on_gpu(stylizer: Stylizer) -> bool:
        device = getattr(stylizer, "device", None)  # torch stylizers have one; the lean CPU path has none
        return getattr(device, "type", None) == "cuda"

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` on the engine thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


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

        from ..api import load_stylizer
        from ..io.synthetic import scene_frame

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
