"""Eager PyTorch: the reference backend, and the one every other backend is checked against."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..config import EngineConfig
from ..model.network import StyleNet
from .base import Engine, copy_norms, register


class TorchEngine(Engine):
    name = "torch"
    takes_norms = True

    def __init__(self, net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig):
        super().__init__(device, dtype)
        if config.threads and device.type == "cpu":
            torch.set_num_threads(config.threads)
        net = copy.deepcopy(net).to(device=device, dtype=dtype).eval()
        # channels-last lets cuDNN pick tensor-core kernels for fp16 convolutions.
        self.channels_last = device.type == "cuda"
        if device.type == "cuda" and dtype == torch.float32:
            torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32: TF32 convs differ by ~2e-3 (measured)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # a stream repeats one shape: time cuDNN's algorithms once
        self.net = net

    def set_norms(self, norms: dict[str, np.ndarray]) -> None:
        copy_norms(self.net, norms)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.dtype)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.net(batch)


@register("torch")
def build(net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig) -> Engine:
    return TorchEngine(net, device, dtype, config)
