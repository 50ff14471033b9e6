"""torch.compile (Inductor); on CUDA, replayed as CUDA graphs with static shapes.

On CUDA the network is compiled for one shape per stream (`dynamic=False`), in FP16 and
channels-last, with every instance norm computing its statistics in fp32 (Inductor fuses the
casts into the reduction, so this costs no extra pass over memory). Each (batch, height, width)
is then captured once as a CUDA graph: a replay launches the whole network at the cost of one
launch, which matters at batch 1 in the live path. A batch smaller than one already captured
for its size (the last batch of a file) is padded up to it rather than recompiled.

Compilation needs Triton and a C compiler and takes tens of seconds per new shape; `warm_up`
does it before a stream starts. If compilation fails at run time, the engine logs why and
carries on with the same network run eagerly (still captured as a CUDA graph), so a
conversion never dies part-way over a toolchain problem.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch import nn

from ..config import EngineConfig
from ..errors import BackendError
from ..model.network import StyleNet
from .base import Engine, copy_norms, register

log = logging.getLogger(__name__)


class Float32StatsInstanceNorm(nn.Module):
    """Affine instance norm whose mean, variance and affine run in fp32 whatever the input dtype.

    In fp16 a 1080p feature map's sum of squares can exceed 65504; here only the normalised
    result is cast back.
    """

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().float(), requires_grad=False)
        self.bias = nn.Parameter(norm.bias.detach().float(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float()
        var, mean = torch.var_mean(wide, dim=(2, 3), keepdim=True, correction=0)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        return (wide * scale + (self.bias.view(1, -1, 1, 1) - mean * scale)).to(x.dtype)


def with_float32_norms(net: nn.Module) -> nn.Module:
    """Replace every affine InstanceNorm2d of `net` (in place) by `Float32StatsInstanceNorm`."""
    for name, child in net.named_children():
        if isinstance(child, nn.InstanceNorm2d) and child.affine:
            setattr(net, name, Float32StatsInstanceNorm(child))
        else:
            with_float32_norms(child)
    return net


class _CapturedShape:
    """One static input shape of a network, captured as a CUDA graph."""

    def __init__(self, run, shape: tuple[int, int, int, int], dtype: torch.dtype, device: torch.device):
        self.batch = shape[0]
        self.input = torch.zeros(shape, dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the capture: compilation, cuDNN's choices, allocations
            for _ in range(3):
                run(self.input)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: a live stream keeps running other engines on another thread while a new
        # style's engine is captured in the background.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = run(self.input)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        count = batch.shape[0]
        self.input[:count].copy_(batch)
        self.graph.replay()
        # A copy: the next replay overwrites the graph's output, and callers (smoothers) keep frames.
        return self.output[:count].clone()


class CompiledEngine(Engine):
    name = "compile"
    takes_norms = True  # parameters are inputs of the compiled graph (no freezing), read by address

    def __init__(self, net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig):
        super().__init__(device, dtype)
        if not hasattr(torch, "compile"):
            raise BackendError(f"torch {torch.__version__} has no torch.compile; upgrade to torch >= 2.0")
        self.cuda = device.type == "cuda"
        if not self.cuda:
            self.eager = copy.deepcopy(net).to(device=device, dtype=dtype).eval()
            self.module = torch.compile(self.eager, dynamic=True)
            return
        _require_triton()
        torch.backends.cudnn.benchmark = True  # static shapes: let cuDNN time its algorithms once per shape
        # Each shape is one recompilation of StyleNet.forward; past Dynamo's limit (8) it would
        # silently run eager, and a long live session with several sizes can pass 8.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        # Norms swapped while the weights are still fp32, so their parameters never pass through fp16.
        net = with_float32_norms(copy.deepcopy(net)).to(device).eval()
        for module in net.modules():  # every weight but the norms' (convs, and rewritten convs)
            if not isinstance(module, Float32StatsInstanceNorm):
                for parameter in module.parameters(recurse=False):
                    parameter.data = parameter.data.to(dtype)
        self.eager = net.to(memory_format=torch.channels_last)
        # autotune: Inductor times Triton convolution templates against cuDNN's per shape (slow to build).
        options = {"max_autotune": True, "max_autotune_conv_backends": "ATEN,TRITON"} if config.autotune else None
        self.module = torch.compile(self.eager, dynamic=False, fullgraph=True, options=options)
        self.compiled = True
        self._captured: dict[tuple[int, int], list[_CapturedShape]] = {}

    def set_norms(self, norms: dict[str, np.ndarray]) -> None:
        copy_norms(self.eager, norms)

    def describe(self) -> str:
        how = "" if not self.cuda else (" + CUDA graphs" if self.compiled else " (eager fallback) + CUDA graphs")
        return f"{self.name}{how} on {self.device} ({str(self.dtype).removeprefix('torch.')})"

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.dtype)
        if not self.cuda:
            try:
                return self.module(batch)
            except Exception as exc:  # Inductor surfaces toolchain problems as its own exceptions
                if isinstance(exc, BackendError):
                    raise
                raise BackendError(f"torch.compile failed: {exc.__class__.__name__}: {str(exc)[:200]}") from exc
        return self._graph_for(batch)(batch)

    def _graph_for(self, batch: torch.Tensor) -> _CapturedShape:
        count, _, height, width = batch.shape
        captured = self._captured.setdefault((height, width), [])
        fitting = [c for c in captured if c.batch >= count]
        if fitting:
            return min(fitting, key=lambda c: c.batch)
        shape = (count, 3, height, width)
        try:
            graph = _CapturedShape(self.module if self.compiled else self.eager, shape, self.dtype, self.device)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back rather than die mid-stream
            if not self.compiled or isinstance(exc, torch.cuda.OutOfMemoryError):
                raise
            log.warning("torch.compile failed for %s (%s: %s); running the network eagerly instead",
                        shape, exc.__class__.__name__, str(exc)[:200])
            self.compiled = False
            self._captured.clear()
            return self._graph_for(batch)
        log.info("compiled and captured a CUDA graph for batch %d at %dx%d", count, width, height)
        captured.append(graph)
        return graph


def _require_triton() -> None:
    try:
        import triton  # noqa: F401
    except ImportError:
        raise BackendError("torch.compile on CUDA needs Triton (pip install triton)") from None


@register("compile")
def build(net: StyleNet, device: torch.device, dtype: torch.dtype, config: EngineConfig) -> Engine:
    return CompiledEngine(net, device, dtype, config)

