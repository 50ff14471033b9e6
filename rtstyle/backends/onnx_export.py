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

import torch
from torch import nn

from ..errors import BackendError
from ..model import network
from ..model.network import PaddedStyleNet, StyleNet
from .cache import cache_key

OPSET = 17
INPUT, OUTPUT = "image", "stylized"


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


def graph_key(net: StyleNet, dtype: torch.dtype) -> str:
    """Names the graph `export_onnx(net, dtype)` makes, without exporting it.

    Covers the fused weights, the layout, the precision and the code behind the graph: this
    file and network.py (hashed whole, so any edit invalidates cached engines) and torch's
    exporter (by version).
    """
    weights = b"".join(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes()
                       for name, tensor in net.state_dict().items())
    code = Path(__file__).read_bytes() + Path(network.__file__).read_bytes()
    return cache_key(weights, net.spec.to_json(), str(dtype), torch.__version__, str(OPSET), code)


def export_onnx(net: StyleNet, dtype: torch.dtype = torch.float32) -> bytes:
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
    return buffer.getvalue()
