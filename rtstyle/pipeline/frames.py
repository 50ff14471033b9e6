"""The stylize stage's work: uint8 frames in, uint8 frames out, through an engine.

Conversions to and from float happen on the engine's device, so only uint8 crosses the bus.
"""

from __future__ import annotations

import numpy as np
import torch

from ..backends.base import Engine
from ..temporal.smoothers import Smoother


class FrameStylizer:
    """Runs batches of H x W x 3 uint8 RGB frames through an engine, then an optional smoother.

    A smoother carries state from frame to frame, so one FrameStylizer serves one stream.
    """

    def __init__(self, engine: Engine, description: str = "", smoother: Smoother | None = None):
        self.engine = engine
        self.description = description or engine.describe()
        self.smoother = smoother

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def to_tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        host = torch.from_numpy(np.stack(images))
        batch = host.to(self.device, non_blocking=True)
        return batch.permute(0, 3, 1, 2).to(self.engine.dtype).div_(255.0)

    @staticmethod
    def to_uint8(batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float 0..1 -> (N, H, W, 3) uint8, rounded, still on the device."""
        return batch.float().clamp_(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        with torch.inference_mode():
            out = self.engine(self.to_tensor(images))
            if self.smoother is not None:
                out = torch.stack([self.smoother(image, frame) for image, frame in zip(images, out)])
            out = self.to_uint8(out).contiguous().cpu().numpy()
        return list(out)
