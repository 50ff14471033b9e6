"""The CUDA frame path: overlapped batches, the compiled engine's CUDA graphs, the smoother on the device.

Everything here but the first two tests needs a CUDA device (marker `gpu`; skipped without one).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtstyle.backends.base import create_engine
from rtstyle.backends.compiled import with_float32_norms
from rtstyle.config import EngineConfig
from rtstyle.model.loader import fuse, load_base
from rtstyle.model.styles import StyleChoice
from rtstyle.stylizers.torch import IN_FLIGHT, TorchStylizer


@pytest.fixture(scope="module", params=["quality", "fast"])
def fused(request):
    return fuse(load_base(request.param), StyleChoice({"mosaic": 1.0}).resolve(request.param))


def frames(count: int, height: int = 72, width: int = 128, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_float32_statistics_norms_leave_the_network_unchanged(fused):
    import copy

    batch = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    swapped = with_float32_norms(copy.deepcopy(fused))
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in swapped.modules())
    with torch.no_grad():
        assert (swapped(batch) - fused(batch)).abs().max().item() < 1e-5


def test_submitted_batches_come_back_in_order_on_cpu(fused):
    stylizer = TorchStylizer(create_engine(fused, EngineConfig(backend="torch", device="cpu")))
    batches = [frames(2, seed=i) for i in range(4)]
    pending = [stylizer.submit(b) for b in batches]
    for batch, waiting in zip(batches, pending):
        assert [a.tobytes() for a in waiting.result()] == [a.tobytes() for a in stylizer(batch)]


@pytest.mark.gpu
def test_overlapped_cuda_batches_match_the_cpu(fused):
    """Batches kept in flight (upload, compute, download on three streams) must never mix."""
    cpu = TorchStylizer(create_engine(fused, EngineConfig(backend="torch", device="cpu")))
    gpu = TorchStylizer(create_engine(fused, EngineConfig(backend="torch", device="cuda", precision="fp32")))
    batches = [frames(4, seed=i) for i in range(10)]
    in_flight, results = [], []
    for batch in batches:
        in_flight.append(gpu.submit(batch))
        if len(in_flight) > IN_FLIGHT:
            results.append(in_flight.pop(0).result())
    results += [p.result() for p in in_flight]
    for batch, got in zip(batches, results):
        for a, b in zip(cpu(batch), got):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.gpu
def test_compiled_cuda_engine_matches_eager_fp32_and_pads_the_last_batch(fused):
    engine = create_engine(fused, EngineConfig(backend="compile", device="cuda", precision="fp16"))
    assert "CUDA graphs" in engine.describe()
    batch = torch.rand(4, 3, 104, 160, generator=torch.Generator().manual_seed(0))
    engine.warm_up(4, 104, 160)
    full = engine(batch.cuda().half()).float().cpu()
    last = engine(batch[:3].cuda().half()).float().cpu()
    assert len(engine._captured[(104, 160)]) == 1  # the batch of 3 replayed the batch-4 graph, padded
    assert torch.equal(last, full[:3])
    with torch.no_grad():
        diff = (full - fused(batch)).abs()
    assert diff.max().item() <= 3e-2 and diff.mean().item() <= 5e-3
    assert "compile" in engine.describe() and "eager fallback" not in engine.describe()


@pytest.mark.gpu
def test_auto_on_cuda_picks_a_working_engine_and_says_why(fused, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="rtstyle.backends.base"):
        engine = create_engine(fused, EngineConfig(device="cuda"))
    assert engine.device.type == "cuda"
    assert any("auto: first that works" in r.message for r in caplog.records)


@pytest.mark.gpu
def test_flow_smoother_on_cuda_matches_the_cpu(shared_data):
    from PIL import Image

    from rtstyle.temporal.smoothers import make_smoother

    paths = sorted((shared_data / "frames" / "sintel_alley_1_clean_gt").glob("frame_*.png"))[:5]
    inputs = [np.asarray(Image.open(p).convert("RGB").resize((320, 136))) for p in paths]
    stylized = [torch.rand(3, 136, 320, generator=torch.Generator().manual_seed(i)) for i in range(len(inputs))]
    outputs = {}
    for device in ("cpu", "cuda"):
        smoother = make_smoother("flow", 0.7)
        outputs[device] = [smoother(image, out.to(device)).cpu() for image, out in zip(inputs, stylized)]
    for a, b in zip(outputs["cpu"], outputs["cuda"]):
        assert (a - b).abs().mean().item() < 1e-3


@pytest.mark.gpu
def test_file_conversion_on_cuda_keeps_every_frame_with_smoothing(clip, tmp_path):
    import av

    from rtstyle.api import load_stylizer
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    stylizer = load_stylizer("fast", StyleChoice({"mosaic": 1.0}), EngineConfig(backend="torch", device="cuda"))
    out = tmp_path / "o.mp4"
    result = convert_file(clip, out, stylizer, ConvertConfig(batch=4, smooth="flow"))
    with av.open(str(clip)) as source, av.open(str(out)) as made:
        assert result.frames == sum(1 for _ in source.decode(video=0)) == sum(1 for _ in made.decode(video=0))
        assert [s.type for s in made.streams] == ["video", "audio"]


def test_yuv420p_from_the_device_matches_what_swscale_makes():
    """The GPU's RGB -> yuv420p conversion must give the colours the CPU path's encoder input has."""
    import av

    from rtstyle.io.synthetic import scene_frame

    rgb = scene_frame(12, 160, 96)
    expected = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
    batch = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255)
    got = TorchStylizer.to_yuv420p(batch)[0].numpy()
    assert got.shape == expected.shape == (144, 160)
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff[:96].max() <= 1  # luma: same matrix, rounding apart
    assert diff[96:].mean() < 1.0  # chroma: box vs swscale's filter differ only at edges
