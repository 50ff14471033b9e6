"""Adapter layers: LoRA on convolutions and per-style deltas on instance-norm scale and shift.

A LoRA adapter (Hu et al. 2021) on a conv with kernel W0 of shape (out, in, k, k) adds
``scaling * B @ A`` with A: (r, in, k, k) and B: (out, r, 1, 1), ``scaling = alpha / r``.
By definition the adapter is A (a k x k conv with the base conv's stride and padding) followed
by B (a 1x1 conv), added to the base output. Convolution is linear, so the unmerged layer adds
the delta kernel to W0 and convolves once instead, which costs nothing per pixel; the adapted
output equals the merged one up to float rounding. A norm adapter adds deltas to the affine
scale and shift of an instance norm, the conditional-instance-norm parametrisation of Dumoulin
et al. 2017.

Each wrapped layer keeps any number of named adapters. ``set_weights`` chooses how much of
each one is active (blending and strength are both just weights); ``merge`` folds the active
mix into the base parameters and ``unmerge`` takes it out again. Merging is done in float32 even
for half-precision weights. These layers serve training (and the unmerged reference, tools/lora_unfused.py); inference
fuses saved adapters in numpy with the same math (`weights.fuse_weights`), which the tests hold
equal to this merge.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdapterError


class AdapterLayer(nn.Module):
    """Shared bookkeeping: named adapters, their mixing weights and the merged state."""

    def __init__(self) -> None:
        super().__init__()
        self.mix: dict[str, float] = {}
        self.merged = False  # the mix's deltas are in the conv's weight (set_weights waits for unmerge)

    @property
    def adapter_names(self) -> list[str]:
        raise NotImplementedError

    def set_weights(self, mix: dict[str, float]) -> None:
        """Choose the active adapters and their weights, e.g. ``{"a": 0.6, "b": 0.4}``."""
        unknown = set(mix) - set(self.adapter_names)
        if unknown:
            raise AdapterError(f"no adapter named {sorted(unknown)} here; have {self.adapter_names}")
        if self.merged:
            raise AdapterError("unmerge() before changing adapter weights")
        self.mix = {name: float(w) for name, w in mix.items() if w != 0.0}

    def merge(self) -> None:
        if self.merged:
            return
        self._apply_delta(sign=1.0)
        self.merged = True

    def unmerge(self) -> None:
        if not self.merged:
            return
        self._apply_delta(sign=-1.0)
        self.merged = False

    def _apply_delta(self, sign: float) -> None:
        raise NotImplementedError


class LoRAConv2d(AdapterLayer):
    """A frozen `nn.Conv2d` with named low-rank adapters."""

    def __init__(self, base: nn.Conv2d):
        super().__init__()
        if base.groups != 1:
            raise AdapterError("LoRA supports ungrouped convolutions only")
        self.base = base
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.rank: dict[str, int] = {}
        self.alpha: dict[str, float] = {}

    @property
    def adapter_names(self) -> list[str]:
        return list(self.lora_A.keys())

    def scaling(self, name: str) -> float:
        return self.alpha[name] / self.rank[name]

    def add_adapter(self, name: str, rank: int, alpha: float, init: str = "zero_b") -> None:
        """Create adapter `name`. ``zero_b`` starts it as a no-op (B = 0), ready to train."""
        if rank < 1:
            raise AdapterError(f"LoRA rank must be at least 1, got {rank}")
        max_rank = min(self.base.out_channels, self.base.in_channels * math.prod(self.base.kernel_size))
        if rank > max_rank:
            raise AdapterError(f"LoRA rank {rank} is larger than this conv allows ({max_rank})")
        base = self.base
        a = nn.Conv2d(base.in_channels, rank, base.kernel_size, stride=base.stride, padding=base.padding,
                      padding_mode=base.padding_mode, dilation=base.dilation, bias=False)
        b = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
        if init == "zero_b":
            nn.init.zeros_(b.weight)
        a.to(base.weight.device, base.weight.dtype)
        b.to(base.weight.device, base.weight.dtype)
        self.lora_A[name], self.lora_B[name] = a, b
        self.rank[name], self.alpha[name] = rank, float(alpha)

    def load_adapter(self, name: str, a: torch.Tensor, b: torch.Tensor, alpha: float) -> None:
        rank = a.shape[0]
        expected_a = (rank, self.base.in_channels, *self.base.kernel_size)
        expected_b = (self.base.out_channels, rank, 1, 1)
        if tuple(a.shape) != expected_a or tuple(b.shape) != expected_b:
            raise AdapterError(
                f"LoRA tensors {tuple(a.shape)}/{tuple(b.shape)} do not fit a conv that needs "
                f"{expected_a}/{expected_b}"
            )
        self.add_adapter(name, rank, alpha)
        with torch.no_grad():
            self.lora_A[name].weight.copy_(a)
            self.lora_B[name].weight.copy_(b)

    def delta_weight(self, name: str) -> torch.Tensor:
        """The adapter as a full kernel, computed in float32."""
        a = self.lora_A[name].weight.float().flatten(1)  # (r, in*k*k)
        b = self.lora_B[name].weight.float().flatten(1)  # (out, r)
        return (b @ a).view_as(self.base.weight) * self.scaling(name)

    def _apply_delta(self, sign: float) -> None:
        if not self.mix:
            return
        delta = sum(w * self.delta_weight(n) for n, w in self.mix.items())
        merged = self.base.weight.data.float() + sign * delta
        if not torch.isfinite(merged).all():
            raise AdapterError("merging the adapters gives non-finite weights")
        self.base.weight.data.copy_(merged.to(self.base.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or not self.mix:
            return self.base(x)
        # Add the (tiny) delta kernel to the base kernel and convolve once, rather than run A and B
        # as two extra convolutions over the (large) feature map: same result, and training the
        # full-resolution decoder convs costs no more than running them.
        delta = sum(w * self.delta_weight(n) for n, w in self.mix.items())
        weight = self.base.weight + delta.to(self.base.weight.dtype)
        return self.base._conv_forward(x, weight, self.base.bias)  # nn.Conv2d's forward, incl. padding_mode


class NormAdapter(AdapterLayer):
    """A frozen affine `nn.InstanceNorm2d` with named deltas on its scale and shift."""

    def __init__(self, base: nn.InstanceNorm2d):
        super().__init__()
        if not base.affine:
            raise AdapterError("norm adapters need an affine instance norm")
        self.base = base
        self.scale = nn.ParameterDict()
        self.shift = nn.ParameterDict()

    @property
    def adapter_names(self) -> list[str]:
        return list(self.scale.keys())

    def add_adapter(self, name: str) -> None:
        zeros = torch.zeros_like(self.base.weight)
        self.scale[name] = nn.Parameter(zeros.clone())
        self.shift[name] = nn.Parameter(zeros.clone())

    def load_adapter(self, name: str, scale: torch.Tensor, shift: torch.Tensor) -> None:
        expected = tuple(self.base.weight.shape)
        if tuple(scale.shape) != expected or tuple(shift.shape) != expected:
            raise AdapterError(f"norm deltas {tuple(scale.shape)} do not fit a norm of {expected}")
        self.add_adapter(name)
        with torch.no_grad():
            self.scale[name].copy_(scale)
            self.shift[name].copy_(shift)

    def _mixed(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale = sum(w * self.scale[n].float() for n, w in self.mix.items())
        shift = sum(w * self.shift[n].float() for n, w in self.mix.items())
        return scale, shift

    def _apply_delta(self, sign: float) -> None:
        if not self.mix:
            return
        scale, shift = self._mixed()
        self.base.weight.data.copy_((self.base.weight.data.float() + sign * scale).to(self.base.weight.dtype))
        self.base.bias.data.copy_((self.base.bias.data.float() + sign * shift).to(self.base.bias.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or not self.mix:
            return self.base(x)
        scale, shift = self._mixed()
        weight = self.base.weight + scale.to(self.base.weight.dtype)
        bias = self.base.bias + shift.to(self.base.bias.dtype)
        return F.instance_norm(x, weight=weight, bias=bias, eps=self.base.eps)
