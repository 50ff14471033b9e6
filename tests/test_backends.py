"""Every backend against eager fp32, on real photos and random input; clear failures."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from rtstyle.backends.base import AUTO_ORDER, available_backends, create_engine
from rtstyle.config import EngineConfig
from rtstyle.errors import BackendError
from rtstyle.model.loader import fuse, load_base
from rtstyle.model.styles import StyleChoice

CPU_BACKENDS = ["torch", "jit", "onnx"]


@pytest.fixture(scope="module", params=["quality", "fast"])
def fused(request):
    model = request.param
    return fuse(load_base(model), StyleChoice({"mosaic": 0.7, "woodcut": 0.3}).resolve(model))


@pytest.fixture(scope="module")
def photos(shared_data):
    from PIL import Image

    images = []
    for name in ["kodim01.png", "astronaut.png"]:
        image = Image.open(shared_data / "content" / name).convert("RGB").resize((157, 101))
        images.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1))
    return torch.stack(images)


def inputs(photos):
    gen = torch.Generator().manual_seed(0)
    return {"photos": photos, "random": torch.rand(3, 3, 64, 90, generator=gen),
            "portrait": torch.rand(1, 3, 90, 42, generator=gen)}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cpu_backends_match_eager_fp32(backend, fused, photos):
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    engine = create_engine(fused, EngineConfig(backend=backend, device="cpu", precision="fp32"))
    for name, batch in inputs(photos).items():
        with torch.no_grad():
            expected = fused(batch)
        out = engine(batch)
        assert out.shape == batch.shape, name
        assert (out.float() - expected).abs().max().item() <= 1e-3, name


def require_cuda_backend(backend: str) -> None:
    """Skip when this CUDA machine lacks the backend's package (onnxruntime-gpu, tensorrt)."""
    if backend == "onnx":
        ort = pytest.importorskip("onnxruntime")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            pytest.skip("onnxruntime without CUDA")
    if backend == "tensorrt":
        pytest.importorskip("tensorrt")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "jit", "onnx", "tensorrt"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_backends_match_eager_fp32(backend, precision, fused, photos):
    require_cuda_backend(backend)
    engine = create_engine(fused, EngineConfig(backend=backend, device="cuda", precision=precision))
    for name, batch in inputs(photos).items():
        with torch.no_grad():
            expected = fused(batch)
        diff = (engine(batch.cuda()).float().cpu() - expected).abs()
        if precision == "fp32":
            assert diff.max().item() <= 1e-3, name
        else:
            assert diff.max().item() <= 3e-2 and diff.mean().item() <= 5e-3, name


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "jit", "onnx", "tensorrt"])
def test_fp16_has_no_overflow_on_extreme_1080p_frames(backend, fused):
    require_cuda_backend(backend)
    engine = create_engine(fused, EngineConfig(backend=backend, device="cuda", precision="fp16"))
    gen = torch.Generator(device="cuda").manual_seed(0)
    frames = {"black": torch.zeros(1, 3, 1080, 1920, device="cuda"),
              "white": torch.ones(1, 3, 1080, 1920, device="cuda"),
              "saturated": torch.tensor([1.0, 0.0, 1.0], device="cuda").view(1, 3, 1, 1).expand(1, 3, 1080, 1920),
              "noise": torch.rand(1, 3, 1080, 1920, device="cuda", generator=gen)}
    for name, frame in frames.items():
        assert torch.isfinite(engine(frame.contiguous())).all(), name


def test_fp16_onnx_graph_keeps_instance_norms_in_fp32(fused, photos):
    """The graph TensorRT builds strongly typed: fp16 in and out, every norm computed in fp32."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from rtstyle.backends.onnx_export import export_onnx

    graph = export_onnx(fused, torch.float16)
    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(graph))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    norms = [n for n in model.graph.node if n.op_type == "InstanceNormalization"]
    assert len(norms) == sum(isinstance(m, torch.nn.InstanceNorm2d) for m in fused.modules())
    assert all(types[name] == onnx.TensorProto.FLOAT for n in norms for name in n.input)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    # ONNX Runtime's CPU provider runs fp16 graphs too (slowly): the graph itself is checked here.
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    batch = torch.nn.functional.pad(photos, (0, 3, 0, 3), mode="reflect")  # 160x104, multiples of 4
    out = torch.from_numpy(session.run(None, {"image": batch.half().numpy()})[0]).float()
    with torch.no_grad():
        diff = (out - fused(batch)).abs()
    assert diff.max().item() <= 3e-2 and diff.mean().item() <= 5e-3


def test_auto_picks_a_working_backend_and_logs_why(fused, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="rtstyle.backends.base"):
        engine = create_engine(fused, EngineConfig(backend="auto", device="cpu"))
    assert engine.name in AUTO_ORDER["cpu"]
    assert any("engine:" in r.message for r in caplog.records)


def test_missing_onnxruntime_is_a_clear_error(fused, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendError, match=r"onnxruntime is not installed: pip install onnxruntime"):
        create_engine(fused, EngineConfig(backend="onnx", device="cpu"))
    # ... and auto falls back to the next backend.
    assert create_engine(fused, EngineConfig(backend="auto", device="cpu")).name == "torch"


def test_cuda_without_gpu_and_fp16_on_cpu_are_clear_errors(fused):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendError, match="no CUDA GPU"):
        create_engine(fused, EngineConfig(device="cuda"))
    with pytest.raises(BackendError, match="fp16 needs a CUDA device"):
        create_engine(fused, EngineConfig(device="cpu", precision="fp16"))


def test_registry_lists_backends():
    assert {"torch", "jit", "onnx"} <= set(available_backends())


def test_tensorrt_without_gpu_or_package_is_a_clear_error(fused):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendError, match="TensorRT needs a CUDA device"):
        create_engine(fused, EngineConfig(backend="tensorrt", device="cpu"))


def test_torch_compile_matches_eager():
    """torch.compile is optional; when Inductor works here it must agree with eager (one model: it is slow)."""
    net = fuse(load_base("fast"), StyleChoice({"mosaic": 1.0}).resolve("fast"))
    try:
        engine = create_engine(net, EngineConfig(backend="compile", device="cpu"))
        batch = torch.rand(2, 3, 48, 72, generator=torch.Generator().manual_seed(0))
        out = engine(batch)
    except BackendError as exc:
        pytest.skip(f"torch.compile does not work here: {exc}")
    with torch.no_grad():
        assert (out - net(batch)).abs().max().item() <= 1e-3


@pytest.mark.gpu
def test_cuda_frame_path_matches_cpu_over_many_batches(fused):
    """Pinned ring buffers and the copy stream must never hand the engine a half-copied batch."""
    from rtstyle.stylizers.torch import TorchStylizer

    cpu = TorchStylizer(create_engine(fused, EngineConfig(backend="torch", device="cpu")))
    gpu = TorchStylizer(create_engine(fused, EngineConfig(backend="torch", device="cuda", precision="fp32")))
    rng = np.random.default_rng(0)
    for _ in range(8):
        frames = [rng.integers(0, 256, (72, 128, 3), dtype=np.uint8) for _ in range(4)]
        for a, b in zip(cpu(frames), gpu(frames)):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
