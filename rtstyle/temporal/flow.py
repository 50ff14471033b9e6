"""Dense optical flow (OpenCV DIS) on input frames, warping, and occlusion masks.

Flows are "backward": for each pixel of frame t, where it was in frame t-1, in pixels, as an
H x W x 2 float32 array (x, y). Occlusion follows Ruder et al. 2016: a pixel is unreliable when
the forward and backward flows disagree or when it sits on a motion boundary.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

#: DIS presets by name: OpenCV's preset and the finest pyramid level it stops at (None: the preset's
#: own). "fine" is "fast" carried down one level further, as "medium" is (host.FLOW_PRESET says why).
PRESETS = {"ultrafast": (0, None), "fast": (1, None), "fine": (1, 1), "medium": (2, None)}


def create_dis(preset: str):
    """An OpenCV DIS optical flow at one of `PRESETS`."""
    import cv2

    number, finest = PRESETS[preset]
    dis = cv2.DISOpticalFlow_create(number)
    if finest is not None:
        dis.setFinestScale(finest)
    return dis


def to_gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class FlowEstimator:
    """DIS optical flow, optionally on a downscaled copy (flow is scaled back to full size)."""

    def __init__(self, preset: str = "medium", max_side: int | None = None):
        self._dis = create_dis(preset)
        self.max_side = max_side

    def small(self, frame: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, float]:
        """Backward flow frame -> previous at the estimation size, and that size's scale (<= 1).

        The flow is in pixels of the estimation size: divide by the scale after resizing it to
        full size. The GPU path uploads it at this size and scales it up on the device.
        """
        import cv2

        a = frame if frame.ndim == 2 else to_gray(frame)
        b = previous if previous.ndim == 2 else to_gray(previous)
        height, width = a.shape
        scale = 1.0
        if self.max_side and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            size = (max(8, round(width * scale)), max(8, round(height * scale)))
            a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
            b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
        return self._dis.calc(a, b, None), scale

    def __call__(self, frame: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Backward flow frame -> previous (both H x W gray uint8 or RGB), at full size."""
        import cv2

        flow, scale = self.small(frame, previous)
        if scale != 1.0:
            height, width = frame.shape[:2]
            flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR) / scale
        return flow


class FlowPair:
    """The backward (t -> t-1) and forward (t-1 -> t) flows between gray frames, on several threads.

    A smoother needs both (the forward one for the forward-backward check). OpenCV lets go of the
    GIL inside DIS, so the two run at once, each with a DIS of its own (kept for reuse: a fresh one
    costs 15 % more on its first frame): on 2 cores a pair takes 0.73 of the time of one flow after
    the other (9.9 -> 7.2 ms at 320x240). Threads live for one call, so nothing runs behind a smoother.
    """

    def __init__(self, preset: str):
        self.preset = preset
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def __call__(self, gray: np.ndarray, last_gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.chain([gray], last_gray)[0]

    def chain(self, grays: list[np.ndarray], last_gray: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(backward, forward) between each of `grays` and the one before it (the first: `last_gray`),
        all at once on up to one thread a flow and a core."""
        pairs = list(zip(grays, [last_gray, *grays[:-1]]))
        workers = max(1, min(2 * len(pairs), os.cpu_count() or 1))
        with ThreadPoolExecutor(workers, thread_name_prefix="rtstyle-flow") as pool:
            futures = [(pool.submit(self._calc, gray, last), pool.submit(self._calc, last, gray))
                       for gray, last in pairs]
            return [(backward.result(), forward.result()) for backward, forward in futures]

    def _calc(self, frame: np.ndarray, previous: np.ndarray) -> np.ndarray:
        try:
            dis = self._idle.get_nowait()
        except queue.Empty:
            dis = create_dis(self.preset)
        try:
            return dis.calc(frame, previous, None)
        finally:
            self._idle.put(dis)


class BatchFlows:
    """A batch's gray copies and flows, all made at once before the frame-by-frame blend.

    A flow smoother blends frame by frame, since each blend needs the last output, but its flows
    need only the input frames: a batch's flows can run at once (`FlowPair.chain`, as many threads
    as cores), which on a many-core host keeps the flows from bounding the GPU path. An entry is
    looked up by the frame object and used only against the very gray it was computed from, so a
    cut or a reset inside the batch falls back to computing the flow there.
    """

    def __init__(self, flows: FlowPair):
        self.flows = flows
        self._ahead: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    @contextmanager
    def ahead(self, frames: list[np.ndarray], shape: tuple[int, int] | None,
              gray_of: Callable[[np.ndarray], np.ndarray], last_gray: np.ndarray | None) -> Iterator[None]:
        """Within it, `frames`' flows are made already, where the stream has begun (`shape` and
        `last_gray`, the stream's frame size and last gray copy) and every frame has that size."""
        if last_gray is not None and len(frames) > 1 and all(frame.shape[:2] == shape for frame in frames):
            grays = [gray_of(frame) for frame in frames]
            flows = self.flows.chain(grays, last_gray)
            previous = [last_gray, *grays[:-1]]
            self._ahead = {id(frame): (gray, last, backward, forward)
                           for frame, gray, last, (backward, forward) in zip(frames, grays, previous, flows)}
        try:
            yield
        finally:
            self._ahead = {}

    def gray(self, frame: np.ndarray, gray_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The frame's gray copy, made ahead where it was."""
        entry = self._ahead.get(id(frame))
        return entry[0] if entry is not None else gray_of(frame)

    def pair(self, frame: np.ndarray, gray_of: Callable[[np.ndarray], np.ndarray], last_gray: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gray, backward, forward) of `frame` against `last_gray`: made ahead, or now."""
        entry = self._ahead.pop(id(frame), None)
        if entry is not None and entry[1] is last_gray:
            return entry[0], entry[2], entry[3]
        gray = gray_of(frame)
        return (gray, *self.flows(gray, last_gray))


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `image` (frame t-1) at x + flow(x): frame t-1 moved onto frame t."""
    import cv2

    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def valid_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """1 where the backward flow t -> t-1 is trustworthy, 0 at occlusions and motion boundaries.

    `forward` is the flow t-1 -> t. Thresholds are Ruder et al.'s.
    """
    return valid_mask_warped(backward, warp(forward, backward))


def valid_mask_warped(backward: np.ndarray, forward_at_target: np.ndarray) -> np.ndarray:
    """`valid_mask` given the forward flow already warped onto frame t (callers that warp with a
    cached grid, like the host smoother, pass it in).

    Sums over the 2-long flow axis are written out: numpy's reductions over it are about 30 times
    slower than the two-term addition, which gives the same bits.
    """
    bx, by = backward[..., 0], backward[..., 1]
    fx, fy = forward_at_target[..., 0], forward_at_target[..., 1]
    backward_sq = bx**2 + by**2
    mismatch = (fx + bx) ** 2 + (fy + by) ** 2
    occluded = mismatch > 0.01 * ((fx**2 + fy**2) + backward_sq) + 0.5
    du_y, du_x = np.gradient(bx)
    dv_y, dv_x = np.gradient(by)
    boundary = du_x**2 + du_y**2 + dv_x**2 + dv_y**2 > 0.01 * backward_sq + 0.002
    return (~occluded & ~boundary).astype(np.float32)
