"""A batch handed to a stylizer whose pixels may not be ready yet (torch-free).

Stylizers return one from `submit`; the stream runner keeps up to IN_FLIGHT of them and asks
for the pixels of the oldest only when it must, so a GPU can work on one batch while the host
fills the next (see torch.py). CPU stylizers return batches that are already done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

#: Batches a stream keeps submitted at once: one computing while the next is uploaded.
IN_FLIGHT = 2

#: Work on a stylized batch before it becomes uint8 (the temporal smoother). Each stylizer calls it
#: with its own arrays and makes the matching smoother (`make_smoother`), so the two always agree.
AfterStep = Callable[..., Any]


class Stylizer(Protocol):
    """Frames in, frames out: H x W x 3 RGB (uint8, or uint16 for high bit depths) in, the same back.

    `TorchStylizer` (stylizers/torch.py), `OnnxCpuStylizer` (stylizers/lean.py) and the live
    `StyleSwitcher` are stylizers; the network they run is a `model.network.StyleNet`. The stream
    runner also takes a plain function of a list of frames.
    """

    description: str

    def submit(self, images: list[np.ndarray], after: AfterStep | None = None, layout: str = "rgb24"
               ) -> PendingBatch: ...

    def warm_up(self, batch: int, height: int, width: int) -> None: ...  # the order of an array's shape

    def make_smoother(self, kind: str, strength: float) -> Any: ...


class PendingBatch:
    """A submitted batch; `result()` waits for its pixels (only the first call waits).

    `host` holds the frames: a numpy array, a list, or a pinned torch buffer that `ready` (a
    CUDA event) says has been filled.
    """

    def __init__(self, host: Any, count: int, ready: Any = None):
        self._host = host
        self._count = count
        self._ready = ready
        self._frames: list[np.ndarray] | None = None

    def done(self) -> bool:
        return self._ready is None or self._ready.query()

    def result(self) -> list[np.ndarray]:
        if self._frames is None:
            if self._ready is not None:
                self._ready.synchronize()
                # The pinned buffer goes back to its ring; the frames leave with a copy of their own.
                host = self._host[: self._count].numpy().copy()
            else:
                host = self._host
            self._frames = list(host)
            self._host = None
        return self._frames
