"""ONNX Runtime on the CPU with numpy alone: the lean path, which never imports torch.

The graph is the base network's committed ONNX template (model/templates.py) with its instance
norms' parameters turned into inputs (`styled_graph`): the fused conv weights of the chosen styles
(model/weights.py) are its external initializers, and the style's norm parameters are fed with
every batch. So nothing is exported or rewritten at run time, and a new style, blend, strength or
picture that leaves the convs alone is a new set of inputs (`set_norms`), not a new session.
uint8 frames go in and out (uint16 for sources above 8 bits); the conversion to float, the padding
to a multiple of 4 and the smoothing happen here in numpy.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..errors import BackendError
from ..io.color import eight_bit, keep_colors
from ..model.ort_session import OrtSession
from ..model.spec import INPUT, OUTPUT, SIZE_MULTIPLE
from .base import PendingBatch

log = logging.getLogger(__name__)


def pad_to_multiple(batch: np.ndarray, multiple: int = SIZE_MULTIPLE, min_side: int = 16) -> np.ndarray:
    """network.pad_to_multiple for numpy (N, C, H, W): bottom/right reflection, replicate when too small."""
    height, width = batch.shape[-2:]
    pad_h = max(min_side, -(-height // multiple) * multiple) - height
    pad_w = max(min_side, -(-width // multiple) * multiple) - width
    if pad_h == 0 and pad_w == 0:
        return batch
    mode = "reflect" if pad_h < height and pad_w < width else "edge"
    return np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode=mode)


def to_batch(images: list[np.ndarray]) -> np.ndarray:
    """H x W x 3 frames (uint8 or uint16) -> (N, 3, H, W) float32 in 0..1, the network's input."""
    scale = np.float32(1 / np.iinfo(images[0].dtype).max)
    return np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) * scale


class OnnxCpuStylizer:
    """Batches of H x W x 3 RGB frames (uint8, or uint16 for high bit depths) through an ONNX Runtime
    CPU session; frames come back in the depth they came in."""

    name = "onnx"

    #: Frames per batch a conversion asks for: batch 1 measured faster end to end than 4 on 2 cores
    #: (13.9 vs 14.4 s, 640x360) at 356 instead of 856 MB peak memory (ONNX Runtime's arena grows
    #: with the batch).
    preferred_batch = 1

    def __init__(self, graph: bytes, weights: dict[str, np.ndarray], description: str, base_id: str = "",
                 threads: int | None = None, norms: dict[str, np.ndarray] | None = None, conv_key: str = "",
                 parallel_frames: int = 1):
        """`weights`: the graph's initializers; `norms`: the values of its norm inputs (see `set_norms`);
        `conv_key`: names the conv weights, so a caller can tell whether `set_norms` reaches a style.

        `parallel_frames` > 1: batches `submit`ted while others compute run at the same time, on a
        second session whose threads are shared out among them (one ONNX Runtime session takes
        concurrent runs). Several of ONNX Runtime's kernels (padding, instance norm, layout reorders)
        use one core whatever the thread count, so on a small CPU two frames at once make more
        frames per second than one frame on every core, at the price of a longer wait for each. A
        single image (`__call__`, `stylize_image`) still gets every thread, and the second session
        is made only when a stream first submits.
        """
        # Never more frames at once than threads: `--threads 1` means one core, parallel or not.
        self.parallel_frames = max(1, min(parallel_frames, threads or os.cpu_count() or 1))
        self.session = OrtSession(graph, weights, threads)
        self._graph, self._threads = graph, threads
        self._parallel_session: OrtSession | None = None
        self._workers = None if self.parallel_frames == 1 else ThreadPoolExecutor(
            self.parallel_frames, thread_name_prefix="onnx-frame")
        self._lock = threading.Lock()
        self.description = description
        self.base_id = base_id
        self.conv_key = conv_key
        self.preserve_color = False  # keep the input's colours, take the style's luminance (io/color.py)
        self._weights = weights
        self._norms = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in (norms or {}).items()}
        self._tiled = None

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The network's weights as they stand: the convs and the current style's norms."""
        return {**self._weights, **self._norms}

    def set_norms(self, norms: dict[str, np.ndarray]) -> None:
        """Paint the next batches with another style's norm parameters (same names and shapes); no rebuild."""
        fresh = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in norms.items()}
        if set(fresh) != set(self._norms) or any(fresh[n].shape != self._norms[n].shape for n in fresh):
            raise BackendError("these norm parameters do not fit this engine's network")
        self._norms = fresh
        self._tiled = None  # the tiles bake the norms into their graphs: remade on the next huge image

    def describe(self) -> str:
        return "onnx/CPU on cpu (float32)"

    def warm_up(self, batch: int, height: int, width: int) -> None:
        """ONNX Runtime plans memory per shape on its first run; do that before the clock starts, on
        the session a stream will use."""
        session = self.session if self._workers is None else self._stream_session()
        self._run(np.zeros((batch, 3, height, width), np.float32), session=session)

    def make_smoother(self, kind: str, strength: float):
        from ..temporal.host import make_host_smoother

        return make_host_smoother(kind, strength)

    def _run(self, batch: np.ndarray, norms: dict[str, np.ndarray] | None = None,
             session: OrtSession | None = None) -> np.ndarray:
        height, width = batch.shape[-2:]
        padded = np.ascontiguousarray(pad_to_multiple(batch))
        feeds = {INPUT: padded, **(self._norms if norms is None else norms)}
        return (session or self.session).run([OUTPUT], feeds)[0][..., :height, :width]

    def _stream_session(self) -> OrtSession:
        """The session parallel frames share, each run on its share of the threads; made on first use."""
        with self._lock:
            if self._parallel_session is None:
                share = max(1, (self._threads or os.cpu_count() or 1) // self.parallel_frames)
                self._parallel_session = OrtSession(self._graph, self._weights, share)
            return self._parallel_session

    def stylize_image(self, image: np.ndarray) -> np.ndarray:
        """One still image; above `onnx_tiles.TILE_ABOVE_PIXELS` in tiles, so memory stays bounded."""
        if not self._needs_tiles(image):
            return self([image])[0]
        return self._tiler()(image)

    def _needs_tiles(self, image: np.ndarray) -> bool:
        from . import tiles as onnx_tiles

        return bool(self.base_id) and image.shape[0] * image.shape[1] > onnx_tiles.TILE_ABOVE_PIXELS

    def _tiler(self):
        from .tiles import TiledStylizer

        with self._lock:  # parallel frames may both want it
            if self._tiled is None:
                self._tiled = TiledStylizer(self.base_id, self.state, OrtSession)
            return self._tiled

    def submit(self, images: list[np.ndarray], after=None, layout: str = "rgb24") -> PendingBatch:
        """Stylize now and hand back a finished batch; with `parallel_frames`, start it on a worker
        and hand back a batch that finishes when it is done.

        `after(images, outputs)` smooths the float (N, H, W, 3) outputs; it runs when the batch's
        pixels are asked for, so batches reach the smoother in the order they were submitted.
        `layout` is a GPU-only request, so frames always come back as H x W x 3 RGB.
        """
        # The style as it stands now: another may be set before a parallel batch starts computing.
        norms, preserve_color = self._norms, self.preserve_color
        if self._workers is None:
            out = self._network(images, norms, self.session)
            return PendingBatch(self._finish(images, out, after, preserve_color), len(images))
        future = self._workers.submit(self._network, images, norms, self._stream_session())
        return _FutureBatch(future, len(images), lambda out: self._finish(images, out, after, preserve_color))

    def _network(self, images: list[np.ndarray], norms: dict[str, np.ndarray], session: OrtSession) -> np.ndarray:
        """The network's float (N, H, W, 3) output."""
        if self._needs_tiles(images[0]):  # 4K and up: frame by frame in tiles, memory bounded
            return np.stack([self._tiler()(image, as_float=True) for image in images])
        return self._run(to_batch(images), norms, session).transpose(0, 2, 3, 1)

    @staticmethod
    def _finish(images: list[np.ndarray], out: np.ndarray, after, preserve_color: bool) -> np.ndarray:
        """Colours kept, smoothed, back to the input's depth (uint8, or uint16 for high bit depths)."""
        depth = images[0].dtype
        top = float(np.iinfo(depth).max)
        if preserve_color:  # the inputs as floats, laid out like `out` (N x H x W x 3)
            out = keep_colors(np.stack(images).astype(np.float32) * np.float32(1 / top), out, axis=3)
        if after is not None:
            out = after(eight_bit(images), np.ascontiguousarray(out))  # OpenCV wants contiguous frames
        return (np.clip(out, 0.0, 1.0) * top + 0.5).astype(depth)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Stylize now on every thread (a photo, a live switch's preview), whatever `parallel_frames` says."""
        if not images:
            return []
        return list(self._finish(images, self._network(images, self._norms, self.session), None, self.preserve_color))


class _FutureBatch(PendingBatch):
    """A batch computing on a worker thread; `finish` turns its network output into frames, in the
    caller's thread, when the pixels are first asked for."""

    def __init__(self, future: Future, count: int, finish):
        super().__init__(None, count)
        self._future, self._finish = future, finish

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> list[np.ndarray]:
        if self._frames is None:
            self._frames = list(self._finish(self._future.result()))
        return self._frames
