"""The adapter file format, where training and runtime meet.

An adapter is a safetensors file holding, for each adapted layer, either LoRA factors
(``<layer>.lora_A`` of shape (r, in, k, k) and ``<layer>.lora_B`` of shape (out, r, 1, 1)) or
instance-norm deltas (``<layer>.norm_scale`` and ``<layer>.norm_shift``), plus string metadata:
the format version, the style name, the base it was made for (id and weight hash), rank and
alpha, the targets, and free-form JSON for provenance and training settings. The scaling
alpha/r is derived per layer, never stored: r is the layer's own rank (its lora_A's first dim),
smaller than the nominal rank on convs too thin to hold it.

Tensors are float32 numpy arrays and this module does not import torch, so the lean runtime
(ONNX Runtime without torch) reads adapters with the same code as training writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AdapterError
from ..io.files import usual_permissions

FORMAT = "rtstyle-adapter/1"


@dataclass
class Adapter:
    """One style adapter for one base network."""

    name: str
    base_id: str
    base_hash: str
    lora: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # float32 (A, B)
    norm: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # float32 (scale, shift)
    alpha: float = 1.0
    description: str = ""
    provenance: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)

    @property
    def rank(self) -> int:
        """The largest LoRA rank; convs too thin for it hold less (each layer's rank is its A's first dim)."""
        return max((a.shape[0] for a, _ in self.lora.values()), default=0)

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        tensors: dict[str, np.ndarray] = {}
        for layer, (a, b) in self.lora.items():
            tensors[f"{layer}.lora_A"] = _float32(a)
            tensors[f"{layer}.lora_B"] = _float32(b)
        for layer, (scale, shift) in self.norm.items():
            tensors[f"{layer}.norm_scale"] = _float32(scale)
            tensors[f"{layer}.norm_shift"] = _float32(shift)
        metadata = {
            "format": FORMAT,
            "style_name": self.name,
            "description": self.description,
            "base_id": self.base_id,
            "base_hash": self.base_hash,
            "rank": str(self.rank),
            "alpha": repr(float(self.alpha)),
            "targets": json.dumps(sorted(self.lora)),
            "norm_targets": json.dumps(sorted(self.norm)),
            "provenance": json.dumps(self.provenance, sort_keys=True),
            "training": json.dumps(self.training, sort_keys=True),
        }
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        usual_permissions(tmp)  # safetensors makes it 0600: other users (their Ray workers) could not read it
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Adapter:
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise AdapterError(f"adapter file not found: {path}")
        try:
            with safe_open(str(path), framework="np") as handle:
                meta = handle.metadata() or {}
                tensors = {key: _float32(handle.get_tensor(key)) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise AdapterError(f"{path} is not a readable safetensors adapter ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise AdapterError(f"{path} is not an rtstyle adapter (format {meta.get('format')!r})")
        try:
            adapter = cls(
                name=meta["style_name"],
                base_id=meta["base_id"],
                base_hash=meta["base_hash"],
                alpha=float(meta["alpha"]),
                description=meta.get("description", ""),
                provenance=json.loads(meta.get("provenance", "{}")),
                training=json.loads(meta.get("training", "{}")),
            )
            for layer in json.loads(meta["targets"]):
                adapter.lora[layer] = (tensors.pop(f"{layer}.lora_A"), tensors.pop(f"{layer}.lora_B"))
            for layer in json.loads(meta["norm_targets"]):
                adapter.norm[layer] = (tensors.pop(f"{layer}.norm_scale"), tensors.pop(f"{layer}.norm_shift"))
        except (KeyError, ValueError) as exc:
            raise AdapterError(f"{path} is an incomplete adapter (missing {exc})") from exc
        if tensors:
            raise AdapterError(f"{path} has tensors no target names: {sorted(tensors)[:3]}")
        return adapter


def adapter_base_id(path: str | Path) -> str | None:
    """The base an adapter file was made for, read from its header only; None if it is not an adapter."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return None
    return meta.get("base_id") if meta.get("format") == FORMAT else None


def _float32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)
