"""The committed ONNX templates of the built-in bases, filled with fused weights.

A template (`assets/onnx/<base>.onnx`, made by tools/build_onnx_templates.py) is the exported
graph of `StyleNet.transform` whose initializers are named by the state-dict keys and stored as
*external* data that is never shipped: the graph alone, 36-60 KB. The lean runtime hands ONNX
Runtime that graph and the output of `weights.fuse_weights` as the external initializers
(`filled_template`), so making a style's engine needs neither torch nor the onnx package, and
no protobuf is rewritten. (Overriding embedded initializers instead, with
`SessionOptions.add_initializer`, loses the convolution weights under ONNX Runtime 1.32's full
graph optimisations: outputs off by 0.38, measured.)

Beside each template, an index (`<base>.json`: the spec it was exported from and each
initializer's shape) checks the weights without reading the protobuf. `template_bytes` makes a
self-contained graph with the weights embedded, for tools and tests (it needs the onnx package).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import BackendError, InputError
from .spec import NetworkSpec, is_norm_key

#: Model property holding the NetworkSpec JSON a template was exported from.
SPEC_KEY = "rtstyle.spec"


def template_path(base_id: str) -> Path:
    return Path(str(resources.files("rtstyle.model") / "assets" / "onnx" / f"{base_id}.onnx"))


def index_path(base_id: str) -> Path:
    return template_path(base_id).with_suffix(".json")


@functools.lru_cache(maxsize=8)
def template_index(base_id: str) -> dict:
    """The template's spec JSON and initializer shapes, read without the onnx package."""
    if not index_path(base_id).is_file():
        raise InputError(f"the base {base_id!r} has no ONNX template ({template_path(base_id)})")
    return json.loads(index_path(base_id).read_text())


def has_template(base_id: str, spec: NetworkSpec) -> bool:
    """Whether a template exists for `base_id` and was made for this network shape."""
    if not template_path(base_id).is_file() or not index_path(base_id).is_file():
        return False
    return template_index(base_id)["spec"] == spec.to_json()


@functools.lru_cache(maxsize=8)
def _graph(base_id: str) -> bytes:
    return template_path(base_id).read_bytes()


def filled_template(base_id: str, state: dict[str, np.ndarray]) -> tuple[bytes, dict[str, np.ndarray]]:
    """(graph bytes, weights): what ONNX Runtime needs to run `base_id` with `state` as its initializers.

    The weights come back as contiguous float32 arrays, checked against the template's index.
    """
    shapes = {name: tuple(dims) for name, dims in template_index(base_id)["initializers"].items()}
    if set(shapes) != set(state):
        raise InputError(f"the {base_id} ONNX template does not fit these weights: template only "
                         f"{sorted(set(shapes) - set(state))[:3]}, weights only {sorted(set(state) - set(shapes))[:3]}")
    weights = {name: np.ascontiguousarray(state[name], dtype=np.float32) for name in shapes}
    for name, array in weights.items():
        if array.shape != shapes[name]:
            raise InputError(f"the {base_id} ONNX template needs {name} of shape {shapes[name]}, got {array.shape}")
    return _graph(base_id), weights


def styled_template_path(base_id: str) -> Path:
    return template_path(base_id).with_suffix(".styled.onnx")


@functools.lru_cache(maxsize=8)
def styled_graph(base_id: str) -> bytes:
    """The template with every instance norm's weight and bias a graph input named by its state-dict key.

    One session of this graph serves every style that differs from another only in its norms
    (built-in styles, blends, strengths, pictures): the style is fed with each batch instead of
    being baked into the weights, so switching it rebuilds nothing. Committed beside the template
    (made by `make_styled_graph` in tools/build_onnx_templates.py), so the lean path reads bytes and
    never imports the onnx package (50 ms of a photo's start).
    """
    path = styled_template_path(base_id)
    if not path.is_file():
        raise InputError(f"the base {base_id!r} has no styled ONNX template ({path})")
    return path.read_bytes()


def make_styled_graph(graph: bytes) -> bytes:
    """`graph` (a template) with its norms' initializers turned into graph inputs of the same names and shapes."""
    onnx = _onnx()
    from onnx import helper

    model = onnx.load_model_from_string(graph)
    norms = [init for init in model.graph.initializer if is_norm_key(init.name)]
    kept = [init for init in model.graph.initializer if not is_norm_key(init.name)]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    for init in norms:
        model.graph.input.append(helper.make_tensor_value_info(init.name, onnx.TensorProto.FLOAT, list(init.dims)))
    return model.SerializeToString()


def template_bytes(base_id: str, state: dict[str, np.ndarray]) -> bytes:
    """A self-contained serialized graph of `base_id` with `state` embedded as its initializers."""
    onnx = _onnx()
    from onnx import numpy_helper

    graph, weights = filled_template(base_id, state)
    model = onnx.load_model_from_string(graph)
    for index, init in enumerate(model.graph.initializer):
        model.graph.initializer[index].CopyFrom(numpy_helper.from_array(weights[init.name], init.name))
    return model.SerializeToString()


def _onnx():
    try:
        import onnx
    except ImportError:
        raise BackendError("the onnx package is missing: pip install onnx") from None
    return onnx


def norm_stats_graph(base_id: str) -> tuple[bytes, list[str]]:
    """The template with, for every instance norm, the mean and the mean square of its input as outputs.

    Returns (graph bytes, output names in norm order: mean_0, meansq_0, mean_1, ...). Run on a
    thumbnail, it gives the statistics that `fixed_norm_graph` then applies to every tile
    (thumbnail instance normalisation, Chen et al., AAAI 2022).
    """
    onnx = _onnx()
    from onnx import helper

    model = onnx.load_model_from_string(_graph(base_id))
    outputs = []
    for index, node in enumerate(n for n in list(model.graph.node) if n.op_type == "InstanceNormalization"):
        source = node.input[0]
        mean, square, meansq = f"norm{index}_mean", f"norm{index}_square", f"norm{index}_meansq"
        model.graph.node.extend([
            helper.make_node("ReduceMean", [source], [mean], axes=[2, 3], keepdims=1),
            helper.make_node("Mul", [source, source], [square]),
            helper.make_node("ReduceMean", [square], [meansq], axes=[2, 3], keepdims=1)])
        for name in (mean, meansq):
            model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            outputs.append(name)
    return model.SerializeToString(), outputs


def fixed_norm_graph(base_id: str) -> tuple[bytes, list[str], set[str]]:
    """The template with every instance norm replaced by `x * scale_k + shift_k`, both graph inputs.

    Returns (graph bytes, the new input names in norm order: norm0_scale, norm0_shift, ..., each of
    shape (1, C, 1, 1): the norm's affine folded into statistics measured elsewhere, and the names
    of the initializers the graph still uses: the norms' own weights and biases are gone).
    """
    onnx = _onnx()
    from onnx import helper

    model = onnx.load_model_from_string(_graph(base_id))
    nodes, inputs, unused = [], [], set()
    for node in model.graph.node:
        if node.op_type != "InstanceNormalization":
            nodes.append(node)
            continue
        index = len(inputs) // 2
        scale, shift, scaled = f"norm{index}_scale", f"norm{index}_shift", f"norm{index}_scaled"
        nodes += [helper.make_node("Mul", [node.input[0], scale], [scaled]),
                  helper.make_node("Add", [scaled, shift], [node.output[0]])]
        inputs += [scale, shift]
        unused.update(node.input[1:])
        for name in (scale, shift):
            model.graph.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, None, 1, 1]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    kept = [init for init in model.graph.initializer if init.name not in unused]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model.SerializeToString(), inputs, {init.name for init in kept}


def norm_parameters(base_id: str, state: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(weight, bias, epsilon) of each instance norm of the template, in graph order, from `state`."""
    onnx = _onnx()

    model = onnx.load_model_from_string(_graph(base_id))
    found = []
    for node in model.graph.node:
        if node.op_type == "InstanceNormalization":
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            found.append((state[node.input[1]], state[node.input[2]], eps))
    return found
