"""Export a fused network to ONNX, shared by the ONNX Runtime and TensorRT backends.

Only `Stylizer.transform` is exported, with dynamic batch, height and width; callers pad to a
multiple of 4 themselves (see network.py). Opset 17 has InstanceNormalization and Resize with
constant float scales, which TensorRT's parser accepts (onnx-tensorrt#615).
"""

from __future__ import annotations

import copy
import io
import warnings

import torch

from ..errors import BackendError
from ..model.network import PaddedStylizer, Stylizer

OPSET = 17
INPUT, OUTPUT = "image", "stylized"


def export_onnx(net: Stylizer, dtype: torch.dtype = torch.float32) -> bytes:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise BackendError("the onnx package is missing: pip install 'rtstyle[onnx]'") from None
    module = PaddedStylizer(copy.deepcopy(net).to(dtype=dtype).eval())
    example = torch.rand(1, 3, 64, 64, dtype=dtype)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about its own deprecation
        torch.onnx.export(module, (example,), buffer, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: axes, OUTPUT: axes}, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    return buffer.getvalue()
