"""Base networks and adapters -> a fused, plain `StyleNet` (torch side of the model loader).

`weights.py` (numpy: base weights, the fusion math), `lora.py` (adapter layers for training)
and this module are the model loader, the only code that knows adapters are LoRA: backends get
an ordinary network whose weights already hold the chosen mix of styles. The fusion itself is
done once, in `weights.fuse_weights`; here its result is loaded into a `StyleNet`. Training
works on unmerged adapter layers instead, through this module too: `add_trainable_adapter`,
`start_from_norms` and `trained_adapter` (the trainer and the tools never touch LoRA internals).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import AdapterError
from .adapters import Adapter
from .lora import AdapterLayer, LoRAConv2d, NormAdapter
from .network import NetworkSpec, StyleNet
from .weights import BASE_FORMAT, BaseWeights, fuse_weights, read_base


@dataclass(frozen=True)
class BaseModel:
    """A frozen base network with its identity, as torch tensors (for training and torch backends)."""

    base_id: str
    spec: NetworkSpec
    state: dict[str, torch.Tensor]
    provenance: str = ""

    @property
    def weight_hash(self) -> str:
        return self.weights.weight_hash

    @cached_property
    def weights(self) -> BaseWeights:
        """The same base as float32 numpy arrays, which the fusion math works on (made once)."""
        state = {key: tensor.detach().float().cpu().contiguous().numpy() for key, tensor in self.state.items()}
        return BaseWeights(self.base_id, self.spec, state, self.provenance)

    def build(self) -> StyleNet:
        net = StyleNet(self.spec)
        net.load_state_dict(self.state)
        return net.eval().requires_grad_(False)


def load_base(model: str | Path) -> BaseModel:
    """Load a base by built-in name ('quality', 'fast') or from a .safetensors path."""
    weights = read_base(model)
    state = {key: torch.from_numpy(array) for key, array in weights.state.items()}
    return BaseModel(weights.base_id, weights.spec, state, weights.provenance)


def save_base(base: BaseModel, path: str | Path) -> None:
    from safetensors.torch import save_file

    metadata = {"format": BASE_FORMAT, "base_id": base.base_id, "spec": base.spec.to_json(),
                "provenance": base.provenance, "weight_hash": base.weight_hash}
    save_file({k: v.contiguous() for k, v in base.state.items()}, str(path), metadata=metadata)


def inject_adapter_layers(net: nn.Module, conv_targets: list[str], norm_targets: list[str]) -> None:
    """Wrap the named convs and norms of `net` in adapter layers (idempotent)."""
    for target in conv_targets:
        _wrap(net, target, nn.Conv2d, LoRAConv2d)
    for target in norm_targets:
        _wrap(net, target, nn.InstanceNorm2d, NormAdapter)


def _wrap(net: nn.Module, target: str, kind: type, wrapper: type) -> None:
    parent_name, _, child = target.rpartition(".")
    try:
        parent = net.get_submodule(parent_name) if parent_name else net
        layer = getattr(parent, child)
    except AttributeError:
        raise AdapterError(f"the base network has no layer {target!r}") from None
    if isinstance(layer, wrapper):
        return
    if not isinstance(layer, kind):
        raise AdapterError(f"layer {target!r} is a {type(layer).__name__}, not a {kind.__name__}")
    setattr(parent, child, wrapper(layer))


def adapter_layers(net: nn.Module) -> dict[str, AdapterLayer]:
    return {name: m for name, m in net.named_modules() if isinstance(m, AdapterLayer)}


def set_mix(net: nn.Module, mix: dict[str, float]) -> None:
    """Activate adapters by name with weights; layers without a named adapter ignore it."""
    for layer in adapter_layers(net).values():
        layer.set_weights({name: w for name, w in mix.items() if name in layer.adapter_names})


def fuse(base: BaseModel, styles: list[tuple[Adapter, float]]) -> StyleNet:
    """A plain network whose weights are the base plus the weighted sum of the adapters (see `fuse_weights`)."""
    state = fuse_weights(base.weights, styles)
    net = StyleNet(base.spec)
    net.load_state_dict({key: torch.from_numpy(array) for key, array in state.items()})
    return net.eval().requires_grad_(False)


#: The name the adapter being trained lives under in its layers (it shows in checkpoint keys).
TRAINING = "learned"


def max_rank(conv: nn.Conv2d) -> int:
    """The largest LoRA rank a conv can hold: beyond it the update is full rank anyway."""
    return min(conv.out_channels, conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1])


def add_trainable_adapter(net: nn.Module, conv_targets: list[str], rank: int, alpha: float,
                          norm_adapters: bool = True) -> list[nn.Parameter]:
    """Wrap the targets, add a fresh (no-op) adapter, freeze everything else; return its parameters.

    A conv thinner than `rank` (the decoder's 8- and 4-channel convs, the 3-channel output conv)
    gets the largest rank it can hold, which for it is a full-rank update.
    """
    ranks = {target: min(rank, max_rank(net.get_submodule(target))) for target in conv_targets}
    norms = [name for name, m in net.named_modules() if isinstance(m, nn.InstanceNorm2d)] if norm_adapters else []
    inject_adapter_layers(net, conv_targets, norms)
    net.requires_grad_(False)
    for name, layer in adapter_layers(net).items():
        if isinstance(layer, LoRAConv2d):
            layer.add_adapter(TRAINING, ranks[name], alpha)
        else:
            layer.add_adapter(TRAINING)
    set_mix(net, {TRAINING: 1.0})
    params = [p for name, p in net.named_parameters() if TRAINING in name.split(".")]
    for p in params:
        p.requires_grad_(True)
    return params


def start_from_norms(net: nn.Module, adapter: Adapter) -> None:
    """Start the trainable adapter's norm deltas at `adapter`'s (refining a norm-only style with LoRA)."""
    layers = adapter_layers(net)
    with torch.no_grad():
        for layer, (scale, shift) in adapter.norm.items():
            layers[layer].scale[TRAINING].copy_(torch.from_numpy(scale))
            layers[layer].shift[TRAINING].copy_(torch.from_numpy(shift))


def trained_adapter(net: nn.Module, base: BaseModel, name: str, alpha: float, training: dict) -> Adapter:
    """The trainable adapter of `net` as an adapter file's contents."""
    adapter = Adapter(name=name, base_id=base.base_id, base_hash=base.weight_hash, alpha=alpha, training=training,
                      provenance={"made_by": "rtstyle train", "mode": training.get("mode")})
    for layer_name, layer in adapter_layers(net).items():
        if isinstance(layer, LoRAConv2d) and TRAINING in layer.adapter_names:
            adapter.lora[layer_name] = (_array(layer.lora_A[TRAINING].weight), _array(layer.lora_B[TRAINING].weight))
        elif isinstance(layer, NormAdapter) and TRAINING in layer.adapter_names:
            adapter.norm[layer_name] = (_array(layer.scale[TRAINING]), _array(layer.shift[TRAINING]))
    return adapter


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A trained tensor as the float32 numpy array adapters hold."""
    return tensor.detach().float().cpu().numpy()
