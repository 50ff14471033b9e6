"""The engine interface and the backend registry.

An engine takes a float batch (N, 3, H, W) in 0..1 that already lives on its device and
returns the stylized batch on the same device, so a GPU pipeline never round-trips through
the host between stages.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch

from ..config import EngineConfig
from ..errors import BackendError
from ..model.network import StyleNet

log = logging.getLogger(__name__)


class Engine(ABC):
    name: str = ""
    #: Whether `set_norms` can change the style in place. Eager, compile, ONNX Runtime and TensorRT
    #: take the norms as inputs; TorchScript's freeze folds them into its graph, so jit is rebuilt per style.
    takes_norms: bool = False

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device = device
        self.dtype = dtype  # the dtype the engine wants its input in

    @abstractmethod
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in 0..1 on `self.device` -> same shape, 0..1, on `self.device`."""

    def set_norms(self, norms: dict[str, np.ndarray]) -> None:
        """Copy a style's instance-norm parameters (state-dict keys) into the running network."""
        raise BackendError(f"the {self.name} engine holds its style in its frozen graph; build a new one for "
                           "another style")

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({str(self.dtype).removeprefix('torch.')})"

    def warm_up(self, batch: int, height: int, width: int) -> None:
        """Run one batch of this shape, so that per-shape work (kernel selection, compilation,
        CUDA graph capture) happens before the stream starts rather than on its first frames."""
        with torch.inference_mode():
            self(torch.zeros(batch, 3, height, width, device=self.device, dtype=self.dtype))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def copy_norms(module: torch.nn.Module, norms: dict[str, np.ndarray]) -> None:
    """In place, so compiled code and captured CUDA graphs, which read these tensors, see the new style.

    Any batch still running on the device finishes with the old values first: the copies are
    queued on the current stream after it (a CPU engine has nothing in flight).
    """
    params = dict(module.named_parameters())
    missing = sorted(set(norms) - set(params))
    if missing:
        raise BackendError(f"this network has no norm parameters {missing[:3]}")
    with torch.no_grad():
        for name, values in norms.items():
            params[name].copy_(torch.from_numpy(np.ascontiguousarray(values)))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise BackendError(f"device {device!r} asked for, but no CUDA GPU is usable (torch "
                               f"{torch.__version__}, {build}); use --device cpu")
        return torch.device(device)
    raise BackendError(f"unknown device {device!r}; use auto, cpu or cuda")


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "fp16":
        if device.type != "cuda":
            raise BackendError("fp16 needs a CUDA device here; use --precision fp32 on CPU")
        return torch.float16
    if precision == "fp32":
        return torch.float32
    raise BackendError(f"unknown precision {precision!r}; use auto, fp32 or fp16")


EngineFactory = Callable[[StyleNet, torch.device, torch.dtype, EngineConfig], Engine]
_REGISTRY: dict[str, EngineFactory] = {}
#: Preference order for `auto`, fastest first (measured: benchmarks/results/engines_*.md).
AUTO_ORDER = {"cuda": ("tensorrt", "compile", "onnx", "torch"), "cpu": ("onnx", "torch", "jit")}


def register(name: str) -> Callable[[EngineFactory], EngineFactory]:
    def wrap(factory: EngineFactory) -> EngineFactory:
        _REGISTRY[name] = factory
        return factory

    return wrap


def available_backends() -> list[str]:
    _load_builtin_backends()
    return sorted(_REGISTRY)


def _load_builtin_backends() -> None:
    # Each module registers itself; optional dependencies are imported only when an engine is built.
    from . import compiled, onnxrt, tensorrt, torch_eager, torchscript  # noqa: F401


def create_engine(net: StyleNet, config: EngineConfig) -> Engine:
    """Build the engine `config` asks for around an already fused network."""
    _load_builtin_backends()
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.precision, device)
    names = AUTO_ORDER[device.type] if config.backend == "auto" else (config.backend,)
    failures = []
    for name in names:
        factory = _REGISTRY.get(name)
        if factory is None:
            if config.backend == "auto":
                continue
            raise BackendError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")
        try:
            engine = factory(net, device, dtype, config)
        except BackendError as exc:
            if config.backend != "auto":
                raise
            failures.append(f"{name}: {exc}")
            continue
        if config.backend == "auto":
            skipped = f"; skipped {'; '.join(failures)}" if failures else ""
            reason = f" (auto: first that works of {' > '.join(names)}, fastest first{skipped})"
        else:
            reason = ""
        log.info("engine: %s%s", engine.describe(), reason)
        return engine
    raise BackendError("no backend works here: " + "; ".join(failures))
