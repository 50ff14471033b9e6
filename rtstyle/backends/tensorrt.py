"""Native TensorRT: build from the ONNX graph, cache the serialized plan, run on torch's stream.

The plan is keyed by the graph's key (fused conv weights and graph code), precision, shape profile,
TensorRT version and GPU model and compute capability (cache.py), so a cached plan loads without
exporting anything, and a timing cache per GPU and version makes rebuilds for new styles fast.
A plan that fails its checksum or fails to deserialize is deleted and rebuilt. One optimisation
profile covers batch 1..max_batch and, for both height and width, min_side..max_side, so
portrait and landscape frames share it.

Precision lives in the graph, not in builder flags: the network is strongly typed (the only kind
TensorRT 11 builds; BuilderFlag.FP16 is gone there), so FP16 means the fp16 ONNX export with its
instance norms kept in fp32 (onnx_export.py). The engine's input and output dtypes are read back
from the built engine, never assumed.

The style's norm parameters are inputs of the plan (`export_onnx(norm_inputs=True, affine=True)`:
each norm a unit InstanceNormalization followed by Mul and Add of the inputs, since TensorRT's
ONNX parser takes an InstanceNormalization's scale and shift only as initializers). They live in
device tensors that `set_norms` overwrites in place, so one plan serves every style that differs
only in its norms.

Not verified on real hardware yet: no TensorRT wheel was available on the machines this was
written on (see benchmarks/results/ for what has been measured).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..config import EngineConfig
from ..errors import BackendError
from ..model.network import StyleNet, pad_to_multiple
from ..model.spec import INPUT, OUTPUT, is_norm_key
from .base import Engine, register
from .cache import cache_key, default_cache_dir, load_or_build, seal, unseal, write_atomic
from .onnx_export import export_onnx, graph_key

log = logging.getLogger(__name__)


def import_trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError("TensorRT is not installed: pip install 'rtstyle[tensorrt]' (needs an NVIDIA GPU)") from None
    return trt


class TensorRTEngine(Engine):
    name = "tensorrt"
    takes_norms = True

    def __init__(self, net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig):
        if device.type != "cuda":
            raise BackendError("TensorRT needs a CUDA device; use --device cuda or another backend")
        trt = import_trt()
        super().__init__(device, dtype)
        self.precision = "fp16" if dtype == torch.float16 else "fp32"
        self.config = config
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        props = torch.cuda.get_device_properties(device)
        self.gpu = f"{props.name} sm_{props.major}{props.minor}"
        profile = {"max_batch": config.max_batch, "min_side": config.min_side, "max_side": config.max_side,
                   "opt": list(config.opt_shape)}
        key = cache_key(graph_key(net, dtype, norm_inputs=True), "affine norms", self.precision, profile,
                        trt.__version__, self.gpu)
        cache = default_cache_dir()
        self.path = cache / f"trt-{key}.plan"
        self._timing_cache = cache / f"trt-timing-{cache_key(trt.__version__, self.gpu)}.cache"
        with torch.cuda.device(device):
            def build() -> bytes:
                return self._build(export_onnx(net, dtype, norm_inputs=True, affine=True))

            self.engine = load_or_build(self.path, self._deserialize, build, "TensorRT engine")
            self.context = self.engine.create_execution_context()
            self._norms = {name: tensor.detach().float().to(device).contiguous()
                           for name, tensor in net.state_dict().items() if is_norm_key(name)}
            for name, values in self._norms.items():  # fixed addresses: set_norms writes into these tensors
                self.context.set_tensor_address(name, values.data_ptr())
        self.dtype = self._tensor_dtype(INPUT)
        self._output_dtype = self._tensor_dtype(OUTPUT)

    def _tensor_dtype(self, name: str) -> torch.dtype:
        dtypes = {self._trt.DataType.FLOAT: torch.float32, self._trt.DataType.HALF: torch.float16}
        found = self.engine.get_tensor_dtype(name)
        if found not in dtypes:
            raise BackendError(f"the TensorRT engine's {name!r} is {found}, expected float or half")
        return dtypes[found]

    def set_norms(self, norms: dict[str, np.ndarray]) -> None:
        if set(norms) != set(self._norms):
            raise BackendError("these norm parameters do not fit this engine's network")
        with torch.no_grad():  # queued on the current stream, after the batches already submitted
            for name, values in norms.items():
                self._norms[name].copy_(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)))

    def describe(self) -> str:
        return f"tensorrt on {self.device} ({self.precision})"

    def _deserialize(self, plan: bytes):
        engine = self._trt.Runtime(self._logger).deserialize_cuda_engine(plan)
        if engine is None:  # some versions return None instead of raising
            raise BackendError("TensorRT could not deserialize the engine")
        return engine

    def _build(self, graph: bytes) -> bytes:
        trt = self._trt
        log.warning("building a TensorRT engine for %s (%s); this takes a while once, then it is cached",
                    self.gpu, self.precision)
        builder = trt.Builder(self._logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(graph):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT could not parse the model: {errors}")
        config = builder.create_builder_config()
        if self.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # on by default; fp32 should mean fp32
        timing = config.create_timing_cache(self._read_timing_cache())
        config.set_timing_cache(timing, ignore_mismatch=True)
        c = self.config
        opt_h, opt_w = (max(c.min_side, min(c.max_side, side)) // 4 * 4 for side in c.opt_shape)
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT, (1, 3, c.min_side, c.min_side), (max(1, c.max_batch // 2), 3, opt_h, opt_w),
                          (c.max_batch, 3, c.max_side, c.max_side))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError("TensorRT failed to build an engine (see its log above)")
        write_atomic(self._timing_cache, seal(bytes(config.get_timing_cache().serialize())))
        return bytes(plan)

    def _read_timing_cache(self) -> bytes:
        """The saved timing cache, or nothing (an unreadable one only costs build time)."""
        try:
            return unseal(self._timing_cache.read_bytes())
        except (OSError, ValueError):
            return b""

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        height, width = batch.shape[-2:]
        padded = pad_to_multiple(batch.to(self.dtype), 4).contiguous()
        n, _, h, w = padded.shape
        c = self.config
        if n > c.max_batch or min(h, w) < c.min_side or max(h, w) > c.max_side:
            raise BackendError(f"batch {n} of {w}x{h} frames is outside this TensorRT engine's profile "
                               f"(batch <= {c.max_batch}, sides {c.min_side}..{c.max_side}); "
                               "use --max-side or rebuild with a wider range")
        out = torch.empty_like(padded, dtype=self._output_dtype)
        self.context.set_input_shape(INPUT, tuple(padded.shape))
        self.context.set_tensor_address(INPUT, padded.data_ptr())
        self.context.set_tensor_address(OUTPUT, out.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise BackendError("TensorRT execution failed")
        return out[..., :height, :width]


@register("tensorrt")
def build(net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig) -> Engine:
    return TensorRTEngine(net, device, dtype, config)
