"""ONNX Runtime on the CPU for the model's committed graphs (the lean stylizer's network, the style
predictor), with the weights given as external initializers, and the import that says how to get
ONNX Runtime. Torch-free."""

from __future__ import annotations

import os

import numpy as np

from ..errors import BackendError


def import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendError("onnxruntime is not installed: pip install onnxruntime "
                           "(or onnxruntime-gpu for CUDA)") from None
    return ort


class OrtSession:
    """An ONNX Runtime CPU session over a graph whose weights (external initializers) are given here."""

    def __init__(self, graph: bytes, weights: dict[str, np.ndarray], threads: int | None = None):
        ort = import_ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        # The session reads these in place of the graph's external data; the OrtValues must outlive it.
        self._values = [ort.OrtValue.ortvalue_from_numpy(array) for array in weights.values()]
        options.add_external_initializers(list(weights), self._values)
        try:
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise BackendError(f"ONNX Runtime could not load the model: {exc}") from exc

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(outputs, feeds)
