"""Export a fused network to ONNX, shared by the ONNX Runtime and TensorRT backends.

Only `StyleNet.transform` is exported, with dynamic batch, height and width; callers pad to a
multiple of 4 themselves (see network.py). Opset 17 has InstanceNormalization and Resize with
constant float scales, which TensorRT's parser accepts (onnx-tensorrt#615).

An fp16 graph keeps every instance norm in fp32 (Cast, norm, Cast). The graph's types are the
precisions TensorRT runs in a strongly typed network (the only kind TensorRT 11 builds), and fp16
instance norm has given large errors there (TensorRT#2691, torch2trt#776); ONNX Runtime gets the
same graph, so both GPU engines are checked against one definition.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BackendError
from ..model import network
from ..model.network import PaddedStyleNet, StyleNet
from ..model.spec import INPUT, OUTPUT, is_norm_key
from .cache import cache_key

OPSET = 17


class Float32Norm(nn.Module):
    """An instance norm that computes in fp32 whatever its input's precision."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.float()).to(x.dtype)


def norms_in_float32(net: nn.Module) -> nn.Module:
    """Replace every instance norm of `net` (in place) by a Float32Norm around it."""
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.InstanceNorm2d):
            parent, _, leaf = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, leaf, Float32Norm(module))
    return net


def graph_key(net: StyleNet, dtype: torch.dtype, norm_inputs: bool = False) -> str:
    """Names the graph `export_onnx(net, dtype, norm_inputs)` makes, without exporting it.

    Covers the fused weights (without the norms when they are inputs: one graph for every style
    that differs only there), the layout, the precision and the code behind the graph: this
    file and network.py (hashed whole, so any edit invalidates cached engines) and torch's
    exporter (by version).
    """
    weights = b"".join(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes()
                       for name, tensor in net.state_dict().items() if not (norm_inputs and is_norm_key(name)))
    code = Path(__file__).read_bytes() + Path(network.__file__).read_bytes()
    return cache_key(weights, net.spec.to_json(), str(dtype), torch.__version__, str(OPSET), code,
                     "norm inputs" if norm_inputs else "")


def export_onnx(net: StyleNet, dtype: torch.dtype = torch.float32, norm_inputs: bool = False,
                affine: bool = False) -> bytes:
    """The graph of `net.transform`; `norm_inputs`: with every norm's weight and bias a float32 graph
    input named by its state-dict key (see `norms_as_inputs`; `affine` for TensorRT)."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise BackendError("the onnx package is missing: pip install onnx") from None
    module = copy.deepcopy(net).to(dtype=dtype).eval()
    if dtype == torch.float16:
        norms_in_float32(module)
    module = PaddedStyleNet(module)
    example = torch.rand(1, 3, 64, 64, dtype=dtype)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about its own deprecation
        torch.onnx.export(module, (example,), buffer, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: axes, OUTPUT: axes}, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    return norms_as_inputs(buffer.getvalue(), affine) if norm_inputs else buffer.getvalue()


def norms_as_inputs(graph: bytes, affine: bool = False) -> bytes:
    """The exported graph with the norms' initializers turned into inputs named by their state-dict keys.

    The exporter names them after the module it was given (``net.`` from PaddedStyleNet, and
    ``.norm.norm.`` inside an fp16 graph's Float32Norm); the style is then fed with each run.
    `affine`: each norm becomes a plain InstanceNormalization (constant unit scale, zero shift)
    followed by Mul and Add of the inputs, for TensorRT, whose parser takes the scale and shift of an
    InstanceNormalization only as initializers (onnx-tensorrt's importer asserts it).
    """
    import onnx
    from onnx import helper

    model = onnx.load_model_from_string(affine_norms(graph) if affine else graph)
    renamed = {}
    for init in list(model.graph.initializer):
        key = init.name.removeprefix("net.").replace(".norm.norm.", ".norm.")
        if is_norm_key(key):
            renamed[init.name] = key
            model.graph.initializer.remove(init)
            model.graph.input.append(helper.make_tensor_value_info(key, init.data_type, list(init.dims)))
    for node in model.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    if not renamed:
        raise BackendError("the exported graph keeps no norm weights as initializers")
    return model.SerializeToString()


def affine_norms(graph: bytes) -> bytes:
    """Every InstanceNormalization(x, w, b) as InstanceNormalization(x, 1, 0) * w[c] + b[c] (same arithmetic)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_model_from_string(graph)
    inits = {init.name: init for init in model.graph.initializer}
    channel_shape = "rtstyle.channel_shape"
    model.graph.initializer.append(numpy_helper.from_array(np.array([1, -1, 1, 1], np.int64), channel_shape))
    nodes = []
    for index, node in enumerate(model.graph.node):
        if node.op_type != "InstanceNormalization":
            nodes.append(node)
            continue
        x, weight, bias = node.input
        channels = list(inits[weight].dims)
        ones, zeros = f"rtstyle.unit_scale.{index}", f"rtstyle.zero_shift.{index}"  # constants, not the style
        model.graph.initializer.extend([numpy_helper.from_array(np.ones(channels, np.float32), ones),
                                        numpy_helper.from_array(np.zeros(channels, np.float32), zeros)])
        plain, scale, shift, scaled = (f"{node.output[0]}.{part}" for part in ("plain", "scale", "shift", "scaled"))
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        nodes += [helper.make_node("InstanceNormalization", [x, ones, zeros], [plain], epsilon=epsilon),
                  helper.make_node("Reshape", [weight, channel_shape], [scale]),
                  helper.make_node("Reshape", [bias, channel_shape], [shift]),
                  helper.make_node("Mul", [plain, scale], [scaled]),
                  helper.make_node("Add", [scaled, shift], [node.output[0]])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model.SerializeToString()


def norms_embedded(graph: bytes, norms: dict[str, np.ndarray]) -> bytes:
    """The inverse of `norms_as_inputs`: a self-contained graph that paints one style (for `rtstyle export`)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(graph)
    for value in [v for v in model.graph.input if v.name in norms]:
        model.graph.input.remove(value)
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(norms[value.name], np.float32), value.name))
    return model.SerializeToString()
