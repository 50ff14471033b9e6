"""ONNX Runtime with the TensorRT, CUDA and CPU execution providers, in that order of preference.

On the GPU, inputs and outputs stay torch tensors on the device, bound by pointer (IO binding),
so nothing returns to the host. cuDNN's exhaustive algorithm search is off (HEURISTIC), since it
makes the first frame of every new shape take seconds.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..config import EngineConfig
from ..errors import BackendError, RtstyleError
from ..model.network import StyleNet, pad_to_multiple
from ..model.ort_session import import_ort
from ..model.spec import INPUT, OUTPUT, is_norm_key
from .base import Engine, register
from .cache import default_cache_dir, load_or_build, read_cached
from .onnx_export import export_onnx, graph_key, norms_embedded

log = logging.getLogger(__name__)


def providers_for(device: torch.device, dtype: torch.dtype, available: list[str], cache_dir: str) -> list:
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise BackendError(f"this onnxruntime has no CUDA provider (has {', '.join(available)}): "
                           "pip uninstall onnxruntime && pip install onnxruntime-gpu")
    cuda = ("CUDAExecutionProvider", {"device_id": device.index or 0, "cudnn_conv_algo_search": "HEURISTIC"})
    chosen = [cuda, "CPUExecutionProvider"]
    if "TensorrtExecutionProvider" in available:
        trt = ("TensorrtExecutionProvider", {"device_id": device.index or 0,
                                              "trt_fp16_enable": dtype == torch.float16,
                                              "trt_engine_cache_enable": True, "trt_engine_cache_path": cache_dir})
        chosen.insert(0, trt)
    return chosen


class OnnxRuntimeEngine(Engine):
    """The style's norm parameters are graph inputs (`export_onnx(norm_inputs=True)`): one cached graph
    and one session serve every style that differs only in its norms."""

    name = "onnx"
    takes_norms = True

    def __init__(self, net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig):
        super().__init__(device, dtype)
        ort = import_ort()
        cache = default_cache_dir()
        self.path = cache / f"stylizer-{graph_key(net, dtype, norm_inputs=True)}.onnx"
        self._norms = {name: tensor.detach().float().cpu().numpy() for name, tensor in net.state_dict().items()
                       if is_norm_key(name)}
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if device.type == "cpu":
            options.intra_op_num_threads = config.threads or max(1, os.cpu_count() or 1)
        providers = providers_for(device, dtype, ort.get_available_providers(), str(cache))

        def start(graph: bytes):
            return ort.InferenceSession(graph, options, providers=providers)

        try:
            self.session = load_or_build(self.path, start, lambda: export_onnx(net, dtype, norm_inputs=True),
                                         "ONNX graph")
        except RtstyleError:  # already one clear line (a missing onnx package, a bad cache setting)
            raise
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise BackendError(f"ONNX Runtime could not load the model: {exc}") from exc
        active = self.session.get_providers()
        if device.type == "cuda" and "CUDAExecutionProvider" not in active:
            raise BackendError(f"ONNX Runtime fell back to {active[0]}: check the CUDA/cuDNN install")
        self.provider = active[0].removesuffix("ExecutionProvider")
        self._element = np.float16 if dtype == torch.float16 else np.float32

    def set_norms(self, norms: dict[str, np.ndarray]) -> None:
        if set(norms) != set(self._norms):
            raise BackendError("these norm parameters do not fit this engine's network")
        self._norms = {name: np.ascontiguousarray(values, dtype=np.float32) for name, values in norms.items()}

    def standalone(self) -> bytes:
        """The cached graph with the current style's norms embedded: a plain .onnx that needs no feeds."""
        return norms_embedded(read_cached(self.path), self._norms)

    def describe(self) -> str:
        return f"onnx/{self.provider} on {self.device} ({str(self.dtype).removeprefix('torch.')})"

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        height, width = batch.shape[-2:]
        padded = pad_to_multiple(batch.to(self.dtype), 4).contiguous()
        return self.run_bound(padded)[..., :height, :width]

    def run_bound(self, padded: torch.Tensor) -> torch.Tensor:
        """Run with input and output bound in place as torch memory (IO binding), on CPU and GPU alike."""
        out = torch.empty_like(padded)
        binding = self.session.io_binding()
        device = (self.device.type, self.device.index or 0)
        binding.bind_input(INPUT, *device, self._element, tuple(padded.shape), padded.data_ptr())
        binding.bind_output(OUTPUT, *device, self._element, tuple(out.shape), out.data_ptr())
        for name, values in self._norms.items():  # the style: a few KB, copied to the device per run
            binding.bind_cpu_input(name, values)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # ORT runs on its own stream
        self.session.run_with_iobinding(binding)
        return out


@register("onnx")
def build(net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig) -> Engine:
    return OnnxRuntimeEngine(net, device, dtype, config)
