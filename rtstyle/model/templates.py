"""The committed ONNX templates of the built-in bases, filled with fused weights.

A template (`assets/onnx/<base>.onnx`, made by tools/build_onnx_templates.py) is the exported
graph of `Stylizer.transform` whose initializers are named by the state-dict keys. Putting the
output of `weights.fuse_weights` into them gives the graph of base + styles without torch.

Each template has an index beside it (`<base>.json`: its spec and each initializer's shape), so
checking that a base has a template reads no protobuf. ONNX Runtime's initializer overrides
(`SessionOptions.add_initializer`) would spare rewriting the graph, but with its full graph
optimisations (15% faster on the quality model) ONNX Runtime 1.32 ignores the overrides of
convolution weights (measured: outputs off by 0.38), so the graph is rewritten instead.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import BackendError, InputError
from .spec import NetworkSpec

#: Model property holding the NetworkSpec JSON a template was exported from.
SPEC_KEY = "rtstyle.spec"


def template_path(base_id: str) -> Path:
    return Path(str(resources.files("rtstyle.model") / "assets" / "onnx" / f"{base_id}.onnx"))


def index_path(base_id: str) -> Path:
    return template_path(base_id).with_suffix(".json")


@functools.lru_cache(maxsize=8)
def template_index(base_id: str) -> dict:
    """The template's spec JSON and initializer shapes, read without the onnx package."""
    return json.loads(index_path(base_id).read_text())


def has_template(base_id: str, spec: NetworkSpec) -> bool:
    """Whether a template exists for `base_id` and was made for this network shape."""
    if not template_path(base_id).is_file() or not index_path(base_id).is_file():
        return False
    return template_index(base_id)["spec"] == spec.to_json()


def template_bytes(base_id: str, state: dict[str, np.ndarray]) -> bytes:
    """The serialized template of `base_id` with every initializer replaced by `state[name]` (float32)."""
    from onnx import numpy_helper

    model = _onnx().ModelProto()
    model.CopyFrom(_template(base_id))
    names = {init.name for init in model.graph.initializer}
    if names != set(state):
        raise InputError(f"the {base_id} ONNX template does not fit these weights: template only "
                         f"{sorted(names - set(state))[:3]}, weights only {sorted(set(state) - names)[:3]}")
    for init in model.graph.initializer:
        array = np.ascontiguousarray(state[init.name], dtype=np.float32)
        if array.shape != tuple(init.dims):
            raise InputError(f"the {base_id} ONNX template needs {init.name} of shape {tuple(init.dims)}, "
                             f"got {array.shape}")
        init.CopyFrom(numpy_helper.from_array(array, init.name))
    return model.SerializeToString()


@functools.lru_cache(maxsize=8)
def _template(base_id: str):
    path = template_path(base_id)
    if not path.is_file():
        raise InputError(f"the base {base_id!r} has no ONNX template ({path})")
    return _onnx().load(str(path))


def _onnx():
    try:
        import onnx
    except ImportError:
        raise BackendError("the onnx package is missing: pip install onnx") from None
    return onnx
