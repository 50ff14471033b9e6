"""Base networks and adapters -> a fused, plain `Stylizer`.

This is the only module that knows adapters are LoRA: backends get an ordinary network
whose weights already hold the chosen mix of styles.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ..errors import AdapterError, InputError
from .adapters import Adapter
from .lora import AdapterLayer, LoRAConv2d, NormAdapter
from .network import NetworkSpec, Stylizer

BASE_FORMAT = "rtstyle-base/1"


@dataclass(frozen=True)
class BaseModel:
    """A frozen base network with its identity."""

    base_id: str
    spec: NetworkSpec
    state: dict[str, torch.Tensor]
    provenance: str = ""

    @property
    def weight_hash(self) -> str:
        return state_hash(self.state)

    def build(self) -> Stylizer:
        net = Stylizer(self.spec)
        net.load_state_dict(self.state)
        return net.eval().requires_grad_(False)


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """A short content hash of a state dict: names, shapes and float32 bytes."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().float().contiguous().cpu()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def builtin_model_path(model: str) -> Path:
    return Path(str(resources.files("rtstyle.model") / "assets" / f"{model}.safetensors"))


def builtin_models() -> list[str]:
    assets = resources.files("rtstyle.model") / "assets"
    return sorted(p.name.removesuffix(".safetensors") for p in assets.iterdir() if p.name.endswith(".safetensors"))


def load_base(model: str | Path) -> BaseModel:
    """Load a base by built-in name ('quality', 'fast') or from a .safetensors path."""
    from safetensors import SafetensorError, safe_open

    path = Path(model)
    if not path.suffix:
        path = builtin_model_path(str(model))
        if not path.is_file():
            raise InputError(f"unknown model {str(model)!r}; built-in models: {', '.join(builtin_models())}")
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path} is not a readable model file ({exc})") from exc
    if meta.get("format") != BASE_FORMAT:
        raise InputError(f"{path} is not an rtstyle base model")
    return BaseModel(meta["base_id"], NetworkSpec.from_json(meta["spec"]), state, meta.get("provenance", ""))


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


def check_fits(adapter: Adapter, base: BaseModel) -> None:
    if adapter.base_id != base.base_id or adapter.base_hash != base.weight_hash:
        raise AdapterError(
            f"adapter {adapter.name!r} was made for base {adapter.base_id!r} ({adapter.base_hash}), "
            f"not for {base.base_id!r} ({base.weight_hash}); pick the model it was trained on "
            f"(--model {adapter.base_id})"
        )


def attach(net: nn.Module, adapter: Adapter, key: str | None = None) -> str:
    """Add `adapter` to a network (wrapping layers as needed); returns the name it lives under."""
    key = key or adapter.name
    inject_adapter_layers(net, list(adapter.lora), list(adapter.norm))
    layers = adapter_layers(net)
    for target, (a, b) in adapter.lora.items():
        layers[target].load_adapter(key, a, b, adapter.alpha)
    for target, (scale, shift) in adapter.norm.items():
        layers[target].load_adapter(key, scale, shift)
    return key


def set_mix(net: nn.Module, mix: dict[str, float]) -> None:
    """Activate adapters by name with weights; layers without a named adapter ignore it."""
    for layer in adapter_layers(net).values():
        layer.set_weights({name: w for name, w in mix.items() if name in layer.adapter_names})


def strip_adapters(net: nn.Module) -> nn.Module:
    """Merge the active mix and replace every adapter layer by its plain base layer."""
    for name, layer in adapter_layers(net).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, child, layer.base)
    return net


def fuse(base: BaseModel, styles: list[tuple[Adapter, float]]) -> Stylizer:
    """A plain network whose weights are the base plus the weighted sum of the adapters."""
    net = base.build()
    mix: dict[str, float] = {}
    for index, (adapter, weight) in enumerate(styles):
        check_fits(adapter, base)
        mix[attach(net, adapter, key=f"s{index}")] = weight
    set_mix(net, mix)
    return strip_adapters(net).eval().requires_grad_(False)
