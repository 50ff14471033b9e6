"""The stylize stage's work: uint8 frames in, uint8 frames out, through an engine.

Only uint8 crosses the bus: conversion to the engine's dtype, stylization, smoothing and the
conversion back to uint8 all run on the engine's device. On CUDA, frames are staged in a small
ring of pinned host buffers allocated once (pinning per frame costs more than it saves) and
copied on a side stream, so the copy of one batch can overlap the compute of the previous one.
"""

from __future__ import annotations

import numpy as np
import torch

from ..backends.base import Engine
from ..temporal.smoothers import Smoother

_RING = 3  # pinned buffers per batch shape: enough for one in flight while the next is filled


class FrameStylizer:
    """Runs batches of H x W x 3 uint8 RGB frames through an engine, then an optional smoother.

    A smoother carries state from frame to frame, so one FrameStylizer serves one stream.
    """

    def __init__(self, engine: Engine, description: str = "", smoother: Smoother | None = None):
        self.engine = engine
        self.description = description or engine.describe()
        self.smoother = smoother
        self._cuda = engine.device.type == "cuda"
        self._copy_stream = torch.cuda.Stream(engine.device) if self._cuda else None
        self._pinned: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.cuda.Event | None]]] = {}
        self._turn = 0

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def to_tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        """(N, 3, H, W) in the engine's dtype, 0..1, on the engine's device."""
        if not self._cuda:
            batch = torch.from_numpy(np.stack(images))
        else:
            batch = self._upload(images)
        return batch.permute(0, 3, 1, 2).to(self.engine.dtype).div_(255.0)

    def _upload(self, images: list[np.ndarray]) -> torch.Tensor:
        shape = (len(images), *images[0].shape)
        ring = self._pinned.setdefault(shape, [])
        if len(ring) < _RING:
            ring.append((torch.empty(shape, dtype=torch.uint8).pin_memory(), None))
        self._turn = (self._turn + 1) % len(ring)
        host, done = ring[self._turn]
        if done is not None:
            done.synchronize()  # the copy that last used this buffer has finished
        np.stack(images, out=host.numpy())
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            batch = host.to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self._copy_stream)
        ring[self._turn] = (host, copied)
        compute.wait_stream(self._copy_stream)
        batch.record_stream(compute)
        return batch

    @staticmethod
    def to_uint8(batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float 0..1 -> (N, H, W, 3) uint8, rounded, still on the device."""
        return batch.float().clamp_(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1)

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        with torch.inference_mode():
            inputs = self.to_tensor(images)
            out = self.engine(inputs)
            if self.smoother is not None:
                out = torch.stack([self.smoother(image, frame, content)
                                   for image, frame, content in zip(images, out, inputs)])
            out = self.to_uint8(out).contiguous().cpu().numpy()
        return list(out)
