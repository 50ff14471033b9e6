"""The stylize stage's work: integer frames in and out (uint8; uint16 above 8 bits), through an engine.

Only those integers cross the bus: conversion to the engine's dtype, stylization, smoothing and the
conversion back to uint8 all run on the engine's device.

On CUDA a batch is *submitted* and its pixels are collected later, so several batches can be in
flight: the upload of batch k+1 (side stream), the compute of batch k and the download of batch
k-1 (another side stream) overlap, ordered by CUDA events. The host waits only when it needs the
pixels (`PendingBatch.result`). Host staging buffers are pinned once per batch shape and reused
in a ring (pinning per frame costs more than it saves).

A file sink can take its frames as yuv420p in its own matrix and range (`layout`, see
io/color.py): on CUDA the colour conversion and the chroma subsampling then run on the GPU, the
download is half the size, and the encoder thread skips swscale (measured on the H100 machine's
host: 1080p libx264 encodes at 197 fps from yuv420p against 153 fps from RGB).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..backends.base import Engine
from ..io.color import eight_bit, keep_colors, parse_yuv_layout
from ..temporal.smoothers import Smoother, make_smoother
from .base import IN_FLIGHT, PendingBatch

_RING = IN_FLIGHT + 1  # pinned buffers per batch shape and direction: those in flight plus one being filled

#: What a TorchStylizer hands its `after` step: (inputs uint8 H x W x 3 on the host, inputs on the
#: device (N, 3, H, W) in 0..1, outputs on the device in 0..1) -> outputs. The torch smoothers' apply_batch.
DeviceStep = Callable[[list[np.ndarray], torch.Tensor, torch.Tensor], torch.Tensor]


class TorchStylizer:
    """Runs batches of H x W x 3 RGB frames (uint8, or uint16 above 8 bits) through an engine.

    Holds no per-stream state beyond reusable staging buffers: a temporal smoother belongs to
    the stream and is passed to `submit` by the stream runner. One stream at a time.
    """

    def __init__(self, engine: Engine, description: str = "", conv_key: str = ""):
        """`conv_key` names the engine's conv weights: a style with the same key is a `set_norms` away
        (for engines that take norms in place; others are rebuilt for each style)."""
        self.engine = engine
        self.conv_key = conv_key if engine.takes_norms else ""
        self.preserve_color = False  # keep the input's colours, take the style's luminance (io/color.py)
        # Batches a conversion asks for: 8 fills an H100 (1080p, benchmarks/results/gpu_summary.md).
        self.preferred_batch = 8 if engine.device.type == "cuda" else 4
        self.description = description or engine.describe()
        self._cuda = engine.device.type == "cuda"
        self._upload_stream = torch.cuda.Stream(engine.device) if self._cuda else None
        self._download_stream = torch.cuda.Stream(engine.device) if self._cuda else None
        self._rings: dict[tuple, list[tuple[torch.Tensor, torch.cuda.Event | None]]] = {}
        self._turns: dict[tuple, int] = {}

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def set_norms(self, norms: dict[str, np.ndarray]) -> None:
        self.engine.set_norms(norms)

    def describe(self) -> str:
        return self.engine.describe()

    def make_smoother(self, kind: str, strength: float) -> Smoother:
        """A temporal smoother for one stream, working where this stylizer's frames are (torch)."""
        return make_smoother(kind, strength)

    def warm_up(self, batch: int, height: int, width: int) -> None:
        """Build whatever the engine builds per shape (compiled kernels, CUDA graphs) before timing starts."""
        self.engine.warm_up(batch, height, width)

    def _pinned(self, kind: str, shape: tuple[int, ...]) -> tuple[torch.Tensor, int]:
        """The next pinned host buffer of this shape, once the copy that last used it has finished."""
        key = (kind, shape)
        ring = self._rings.setdefault(key, [])
        turn = (self._turns.get(key, -1) + 1) % _RING
        self._turns[key] = turn
        if turn == len(ring):
            ring.append((torch.empty(shape, dtype=torch.uint8).pin_memory(), None))
        host, last_copy = ring[turn]
        if last_copy is not None:
            last_copy.synchronize()
        return host, turn

    def _upload(self, images: list[np.ndarray]) -> torch.Tensor:
        shape = (len(images), *images[0].shape)
        host, turn = self._pinned("up", shape)
        np.stack(images, out=host.numpy())
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._upload_stream):
            batch = host.to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self._upload_stream)
        self._rings[("up", shape)][turn] = (host, copied)
        compute.wait_stream(self._upload_stream)
        batch.record_stream(compute)
        return batch

    def _download(self, frames: torch.Tensor) -> PendingBatch:
        """Copy (N, H, W, 3) uint8 device frames into a pinned buffer on the download stream."""
        host, turn = self._pinned("down", tuple(frames.shape))
        computed = torch.cuda.Event()
        computed.record(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._download_stream):
            self._download_stream.wait_event(computed)
            host.copy_(frames, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self._download_stream)
        frames.record_stream(self._download_stream)
        self._rings[("down", tuple(frames.shape))][turn] = (host, copied)
        return PendingBatch(host, len(frames), copied)

    def to_tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        """(N, 3, H, W) in the engine's dtype, 0..1, on the engine's device (channels-last in memory)."""
        batch = self._upload(images) if self._cuda else torch.from_numpy(np.stack(images))
        return batch.permute(0, 3, 1, 2).to(self.engine.dtype).div_(255.0)

    @staticmethod
    def to_yuv420p(batch: torch.Tensor, kr: float = 0.299, kb: float = 0.114, full_range: bool = False
                   ) -> torch.Tensor:
        """(N, 3, H, W) float RGB 0..1 -> (N, H * 3/2, W) uint8 yuv420p planes, as PyAV lays them out.

        `kr`, `kb`: the matrix's luma weights (BT.601 by default); limited range unless `full_range`.
        Chroma is the 2 x 2 mean. H and W must be even.
        """
        rgb = batch.float().clamp(0.0, 1.0)
        count, _, height, width = rgb.shape
        luma_scale, chroma_scale, offset = (255.0, 255.0, 0.0) if full_range else (219.0, 224.0, 16.0)

        def luma_of(r, g, b):
            return kr * r + (1.0 - kr - kb) * g + kb * b

        r, g, b = rgb.unbind(1)
        luma = offset + luma_scale * luma_of(r, g, b)
        r, g, b = torch.nn.functional.avg_pool2d(rgb, 2).unbind(1)
        mean_luma = luma_of(r, g, b)
        cb = 128.0 + chroma_scale * (b - mean_luma) / (2.0 * (1.0 - kb))
        cr = 128.0 + chroma_scale * (r - mean_luma) / (2.0 * (1.0 - kr))
        planes = torch.cat([luma.flatten(1), cb.flatten(1), cr.flatten(1)], dim=1)
        return planes.add_(0.5).clamp_(0, 255).to(torch.uint8).view(count, height * 3 // 2, width)

    @staticmethod
    def to_uint8(batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float 0..1 -> (N, H, W, 3) uint8, rounded, contiguous, still on the device."""
        return batch.float().clamp_(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def submit(self, images: list[np.ndarray], after: DeviceStep | None = None, layout: str = "rgb24"
               ) -> PendingBatch:
        """Queue a batch; on CUDA this returns before the GPU has finished (see module docstring).

        `after` runs on the stylized batch while it is still on the device (the smoother).
        `layout`: "rgb24" (H x W x 3 frames) or a yuv420p layout (H * 3/2 x W planes, io/color.py);
        yuv420p is a request that only CUDA engines take up, so a sink asking for it must accept either.
        """
        if images[0].dtype != np.uint8:
            return self._submit_high_depth(images, after)
        with torch.inference_mode():
            inputs = self.to_tensor(images)
            out = self.engine(inputs)
            if self.preserve_color:
                out = keep_colors(inputs.float(), out.float(), axis=1)
            if after is not None:
                out = after(images, inputs, out)
            height, width = out.shape[-2:]
            yuv = parse_yuv_layout(layout)
            if yuv is not None and self._cuda and height % 2 == 0 and width % 2 == 0:
                frames = self.to_yuv420p(out, *yuv)
            else:
                frames = self.to_uint8(out)
            if self._cuda:
                return self._download(frames)
            return PendingBatch(frames.numpy(), len(images))

    def _submit_high_depth(self, images: list[np.ndarray], after: DeviceStep | None) -> PendingBatch:
        """uint16 frames (10/12/16-bit sources): converted on the host, synchronously.

        Rare enough (and torch's uint16 support thin enough) that the pinned rings stay uint8-only.
        """
        top = float(np.iinfo(images[0].dtype).max)
        batch = np.stack(images).astype(np.float32) * np.float32(1 / top)
        with torch.inference_mode():
            inputs = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).to(self.engine.dtype)
            out = self.engine(inputs)
            if self.preserve_color:
                out = keep_colors(inputs.float(), out.float(), axis=1)
            if after is not None:
                out = after(eight_bit(images), inputs, out)
            frames = out.float().clamp_(0.0, 1.0).mul_(top).add_(0.5).to(torch.int32).permute(0, 2, 3, 1).cpu()
        return PendingBatch(frames.numpy().astype(images[0].dtype), len(images))

    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        return self.submit(images).result()
