"""torch.compile (Inductor). Optional: it needs a working C++/Triton toolchain and compiles on
first use of each new shape family, which takes tens of seconds; `auto` never picks it."""

from __future__ import annotations

import copy

import torch

from ..config import EngineConfig
from ..errors import BackendError
from ..model.network import Stylizer
from .base import Engine, register


class CompiledEngine(Engine):
    name = "compile"

    def __init__(self, net: Stylizer, device: torch.device, dtype: torch.dtype, config: EngineConfig):
        super().__init__(device, dtype)
        if not hasattr(torch, "compile"):
            raise BackendError(f"torch {torch.__version__} has no torch.compile; upgrade to torch >= 2.0")
        net = copy.deepcopy(net).to(device=device, dtype=dtype).eval()
        self.module = torch.compile(net, dynamic=True)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        try:
            return self.module(batch.to(self.dtype))
        except Exception as exc:  # Inductor surfaces toolchain problems as its own exceptions
            if isinstance(exc, BackendError):
                raise
            raise BackendError(f"torch.compile failed: {exc.__class__.__name__}: {str(exc)[:200]}") from exc


@register("compile")
def build(net: Stylizer, device: torch.device, dtype: torch.dtype, config: EngineConfig) -> Engine:
    return CompiledEngine(net, device, dtype, config)
