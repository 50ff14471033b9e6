"""TorchScript: script, freeze and optimize_for_inference.

Scripted rather than traced: tracing freezes `interpolate(scale_factor=2)` and the input padding
to the example's size (pytorch#36596), so a traced model breaks at other resolutions.
"""

from __future__ import annotations

import copy
import warnings

import torch

from ..config import EngineConfig
from ..errors import BackendError
from ..model.network import StyleNet
from .base import Engine, register


class TorchScriptEngine(Engine):
    name = "jit"

    def __init__(self, net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig):
        super().__init__(device, dtype)
        net = copy.deepcopy(net).to(device=device, dtype=dtype).eval()
        if device.type == "cuda" and dtype == torch.float32:
            torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32: TF32 convs differ by ~4e-3 (measured)
        try:
            with warnings.catch_warnings():
                # torch 2.10+ marks TorchScript deprecated (FutureWarning on every call); it still
                # works, and saying so once per engine build is noise in a user's terminal.
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
                scripted = torch.jit.freeze(torch.jit.script(net))
                self.module = torch.jit.optimize_for_inference(scripted)
        except Exception as exc:  # TorchScript raises plain RuntimeErrors
            raise BackendError(f"TorchScript compilation failed: {exc}") from exc

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch.to(self.dtype))


@register("jit")
def build(net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig) -> Engine:
    return TorchScriptEngine(net, device, dtype, config)
