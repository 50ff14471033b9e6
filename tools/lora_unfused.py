"""The unmerged LoRA path: adapters attached to a network as layers and merged on demand, not fused into
plain weights. Inference never takes it (the model loader fuses, `model/weights.py`); it is the reference
that fusion is tested against (tests/test_adapters.py, test_lean_model.py) and what the LoRA-forward
benchmark times (benchmarks/engines.py)."""

from __future__ import annotations

import torch
from torch import nn

from rtstyle.model.adapters import Adapter
from rtstyle.model.loader import adapter_layers, inject_adapter_layers


def attach(net: nn.Module, adapter: Adapter, key: str | None = None) -> str:
    """Add `adapter` to a network (wrapping layers as needed); returns the name it lives under."""
    key = key or adapter.name
    inject_adapter_layers(net, list(adapter.lora), list(adapter.norm))
    layers = adapter_layers(net)
    for target, (a, b) in adapter.lora.items():
        layers[target].load_adapter(key, torch.from_numpy(a), torch.from_numpy(b), adapter.alpha)
    for target, (scale, shift) in adapter.norm.items():
        layers[target].load_adapter(key, torch.from_numpy(scale), torch.from_numpy(shift))
    return key


def strip_adapters(net: nn.Module) -> nn.Module:
    """Merge the active mix and replace every adapter layer by its plain base layer."""
    for name, layer in adapter_layers(net).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, child, layer.base)
    return net
