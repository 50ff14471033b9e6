"""Base weights and the fusion of adapters into them, in numpy.

This is the one implementation of the adapter math at inference time: a LoRA adapter on a conv
with kernel W0 adds ``alpha / r * B @ A`` (r = A's first dim) and a norm adapter adds its scale
and shift deltas to the instance norm's weight and bias; a mix of styles adds the weighted sum,
computed in float32. `loader.fuse` loads the result into a torch `StyleNet` and the lean runtime
into an ONNX template (`templates.py`), so both run the same weights. It imports numpy and
safetensors only, never torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import AdapterError, InputError
from .adapters import Adapter
from .spec import NetworkSpec, is_norm_key

BASE_FORMAT = "rtstyle-base/1"


@dataclass(frozen=True)
class BaseWeights:
    """A base network's identity and its float32 weights, keyed like the `StyleNet` state dict."""

    base_id: str
    spec: NetworkSpec
    state: dict[str, np.ndarray]
    provenance: str = ""

    @cached_property
    def weight_hash(self) -> str:
        """What adapters record as `base_hash`, to refuse one made for other weights (hashed once)."""
        return state_hash(self.state)


def state_hash(state: dict[str, np.ndarray]) -> str:
    """A short content hash of a state dict: names, shapes and float32 bytes."""
    digest = hashlib.sha256()
    for key in sorted(state):
        array = np.ascontiguousarray(state[key], dtype=np.float32)
        digest.update(key.encode())
        digest.update(str(tuple(array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def builtin_model_path(model: str) -> Path:
    return Path(str(resources.files("rtstyle.model") / "assets" / f"{model}.safetensors"))


def builtin_models() -> list[str]:
    assets = resources.files("rtstyle.model") / "assets"
    return sorted(p.name.removesuffix(".safetensors") for p in assets.iterdir() if p.name.endswith(".safetensors"))


def read_base(model: str | Path) -> BaseWeights:
    """Read a base by built-in name ('quality', 'fast') or from a .safetensors path."""
    from safetensors import SafetensorError, safe_open

    path = Path(model)
    if not path.suffix:
        path = builtin_model_path(str(model))
        if not path.is_file():
            raise InputError(f"unknown model {str(model)!r}; built-in models: {', '.join(builtin_models())}")
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="np") as handle:
            meta = handle.metadata() or {}
            state = {key: np.ascontiguousarray(handle.get_tensor(key), dtype=np.float32) for key in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path} is not a readable model file ({exc})") from exc
    if meta.get("format") != BASE_FORMAT:
        raise InputError(f"{path} is not an rtstyle base model")
    return BaseWeights(meta["base_id"], NetworkSpec.from_json(meta["spec"]), state, meta.get("provenance", ""))


def check_fits(adapter: Adapter, base: BaseWeights) -> None:
    """Refuse an adapter trained on another base: its deltas would mean nothing here."""
    if adapter.base_id != base.base_id or adapter.base_hash != base.weight_hash:
        raise AdapterError(
            f"adapter {adapter.name!r} was made for base {adapter.base_id!r} ({adapter.base_hash}), "
            f"not for {base.base_id!r} ({base.weight_hash}); pick the model it was trained on "
            f"(--model {adapter.base_id})"
        )


def fuse_weights(base: BaseWeights, styles: list[tuple[Adapter, float]]) -> dict[str, np.ndarray]:
    """The base's state dict plus the weighted sum of the adapters' deltas (float32).

    Styles with weight 0 are skipped, so strength 0 gives the base weights bit for bit.
    """
    for adapter, _ in styles:
        check_fits(adapter, base)
    deltas: dict[str, list[np.ndarray]] = {}  # state-dict key -> weighted deltas, in style order
    for adapter, weight in styles:
        if weight == 0.0:
            continue
        w = np.float32(weight)
        for target, (a, b) in adapter.lora.items():
            kernel = _param(base, target, "weight", conv=True)
            deltas.setdefault(f"{target}.weight", []).append(w * lora_delta(kernel, a, b, adapter.alpha))
        for target, (scale, shift) in adapter.norm.items():
            expected = _param(base, target, "weight", conv=False).shape
            _param(base, target, "bias", conv=False)
            if scale.shape != expected or shift.shape != expected:
                raise AdapterError(f"norm deltas {tuple(scale.shape)} do not fit a norm of {tuple(expected)}")
            deltas.setdefault(f"{target}.weight", []).append(w * np.asarray(scale, dtype=np.float32))
            deltas.setdefault(f"{target}.bias", []).append(w * np.asarray(shift, dtype=np.float32))
    fused = dict(base.state)
    for key, terms in deltas.items():
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        merged = base.state[key].astype(np.float32) + total
        if not np.isfinite(merged).all():
            raise AdapterError("merging the adapters gives non-finite weights")
        fused[key] = merged
    return fused


@dataclass(frozen=True)
class FusedStyle:
    """Fused weights split the way engines take them: the convs built in, the norms fed with each batch.

    Styles with the same `conv_key` differ only in their norms (built-in styles of the quality
    model, blends, strengths, pictures), so one engine serves them all.
    """

    convs: dict[str, np.ndarray]
    norms: dict[str, np.ndarray]
    conv_key: str


def fuse_style(base: BaseWeights, styles: list[tuple[Adapter, float]]) -> FusedStyle:
    fused = fuse_weights(base, styles)
    return FusedStyle({k: v for k, v in fused.items() if not is_norm_key(k)},
                      {k: v for k, v in fused.items() if is_norm_key(k)}, conv_key(base, styles))


def conv_key(base: BaseWeights, styles: list[tuple[Adapter, float]]) -> str:
    """Names the conv weights `fuse_weights` makes: the base and the LoRA factors with their weights."""
    digest = hashlib.sha256(base.weight_hash.encode())
    for adapter, weight in styles:
        if weight == 0.0 or not adapter.lora:
            continue
        digest.update(repr((float(weight), float(adapter.alpha))).encode())
        for target in sorted(adapter.lora):
            a, b = adapter.lora[target]
            digest.update(target.encode())
            digest.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
            digest.update(np.ascontiguousarray(b, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def lora_delta(kernel: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """One LoRA adapter as a full kernel: ``alpha / r * B @ A`` shaped like `kernel`, in float32."""
    rank = a.shape[0]
    expected_a = (rank, kernel.shape[1], *kernel.shape[2:])
    expected_b = (kernel.shape[0], rank, 1, 1)
    if tuple(a.shape) != expected_a or tuple(b.shape) != expected_b:
        raise AdapterError(
            f"LoRA tensors {tuple(a.shape)}/{tuple(b.shape)} do not fit a conv that needs "
            f"{expected_a}/{expected_b}"
        )
    a2 = np.asarray(a, dtype=np.float32).reshape(rank, -1)
    b2 = np.asarray(b, dtype=np.float32).reshape(kernel.shape[0], rank)
    return (b2 @ a2).reshape(kernel.shape) * np.float32(alpha / rank)


def _param(base: BaseWeights, target: str, name: str, conv: bool) -> np.ndarray:
    """The base tensor `<target>.<name>`, checked to be a conv kernel (4-D) or a norm vector (1-D)."""
    array = base.state.get(f"{target}.{name}")
    if array is None:
        raise AdapterError(f"the base network has no layer {target!r}")
    if array.ndim != (4 if conv else 1):
        kind = "Conv2d" if conv else "InstanceNorm2d"
        raise AdapterError(f"layer {target!r} is not a {kind}")
    return array

