"""The torch-free model loader: numpy fusion, ONNX templates, and imports that leave torch alone."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lora_unfused import attach, strip_adapters  # tools/, on the path from conftest

from rtstyle.errors import AdapterError, InputError
from rtstyle.model.loader import fuse, load_base, set_mix
from rtstyle.model.spec import BUILTIN_SPECS
from rtstyle.model.styles import StyleChoice, load_style
from rtstyle.model.templates import has_template, template_bytes, template_path
from rtstyle.model.weights import check_fits, fuse_weights, read_base

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["quality", "fast"]
CHOICES = {
    "one style": StyleChoice({"mosaic": 1.0}),
    "blend at 0.7": StyleChoice({"mosaic": 0.6, "woodcut": 0.4}, strength=0.7),
    "strength 0": StyleChoice({"mosaic": 1.0}, strength=0.0),
}


def build_templates_tool():
    """tools/build_onnx_templates.py, loaded as its script would be (the rewrites it imports sit beside it)."""
    spec = importlib.util.spec_from_file_location("build_onnx_templates", ROOT / "tools" / "build_onnx_templates.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_merged_state(model: str, styles) -> dict[str, torch.Tensor]:
    """The weights lora.py's adapter layers merge to: attach, set the mix, strip."""
    net = load_base(model).build()
    mix = {attach(net, adapter, key=f"s{index}"): weight for index, (adapter, weight) in enumerate(styles)}
    set_mix(net, mix)
    return strip_adapters(net).state_dict()


@pytest.mark.parametrize("choice", sorted(CHOICES))
@pytest.mark.parametrize("model", MODELS)
def test_numpy_fusion_equals_the_torch_adapter_merge(model, choice):
    styles = CHOICES[choice].resolve(model)
    fused = fuse_weights(read_base(model), styles)
    merged = torch_merged_state(model, styles)
    assert set(fused) == set(merged)
    for key, tensor in merged.items():
        assert fused[key].dtype == np.float32 and fused[key].shape == tuple(tensor.shape)
        assert np.abs(fused[key] - tensor.numpy()).max() <= 1e-6, key
    if choice == "strength 0":
        base = read_base(model)
        assert all(np.array_equal(fused[key], base.state[key]) for key in base.state)


def test_the_fast_styles_exercise_lora_and_the_quality_styles_norms():
    assert load_style("mosaic", "fast").lora and load_style("mosaic", "quality").norm


def test_read_base_matches_load_base_and_the_adapters():
    for model in MODELS:
        weights, base = read_base(model), load_base(model)
        assert weights.weight_hash == base.weight_hash == load_style("mosaic", model).base_hash
        assert weights.spec == BUILTIN_SPECS[model]
        check_fits(load_style("mosaic", model), weights)
    with pytest.raises(InputError, match="unknown model"):
        read_base("nonesuch")


def test_fusion_refuses_bad_adapters():
    base = read_base("fast")
    with pytest.raises(AdapterError, match="was made for base"):
        fuse_weights(base, [(load_style("mosaic", "quality"), 1.0)])
    adapter = load_style("mosaic", "fast")
    a, b = adapter.lora["res.0.first.conv"]
    adapter.lora["res.0.first.conv"] = (a[:, :3], b)
    with pytest.raises(AdapterError, match="do not fit"):
        fuse_weights(base, [(adapter, 1.0)])
    adapter = load_style("mosaic", "fast")
    scale, shift = adapter.norm["output.norm"]
    adapter.norm["output.norm"] = (np.full_like(scale, np.inf), shift)
    with pytest.raises(AdapterError, match="non-finite"):
        fuse_weights(base, [(adapter, 1.0)])
    adapter = load_style("mosaic", "fast")
    adapter.lora["res.9.first.conv"] = adapter.lora["res.0.first.conv"]
    with pytest.raises(AdapterError, match="no layer"):
        fuse_weights(base, [(adapter, 1.0)])


@pytest.mark.parametrize("model", [*MODELS, "arbitrary"])
def test_committed_template_equals_a_fresh_export(model):
    import onnx

    fresh = build_templates_tool().template_model(load_base(model).build())
    committed = onnx.load(str(template_path(model)), load_external_data=False)
    assert [n.op_type for n in committed.graph.node] == [n.op_type for n in fresh.graph.node]
    shapes = {init.name: tuple(init.dims) for init in committed.graph.initializer}
    assert shapes == {init.name: tuple(init.dims) for init in fresh.graph.initializer}
    assert shapes == {key: tuple(t.shape) for key, t in load_base(model).state.items()}
    assert has_template(model, BUILTIN_SPECS[model])
    assert not has_template(model, BUILTIN_SPECS["quality" if model == "fast" else "fast"])


@pytest.mark.parametrize("model", [*MODELS, "arbitrary"])
def test_committed_styled_template_is_the_template_with_norm_inputs(model):
    from rtstyle.model.templates import make_styled_graph, styled_graph

    assert styled_graph(model) == make_styled_graph(template_path(model).read_bytes())


@pytest.mark.parametrize("model", MODELS)
def test_template_with_fused_weights_runs_like_the_torch_network(model):
    import onnxruntime as ort

    styles = CHOICES["blend at 0.7"].resolve(model)
    graph = template_bytes(model, fuse_weights(read_base(model), styles))
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, 64, 96), dtype=np.float32)
    ours = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        expected = fuse(load_base(model), styles).transform(torch.from_numpy(x)).numpy()
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-4


@pytest.mark.parametrize("model", [*MODELS, "arbitrary"])
def test_cpu_rewrites_leave_the_output_alone(model):
    """The template's sub-pixel and space-to-depth convs (tools/onnx_rewrites.py) against the
    plain export of the same weights, at sides that are multiples of 4 but not of 8 or 16, and tiny."""
    import onnx
    import onnxruntime as ort

    from rtstyle.backends.onnx_export import export_onnx

    base = load_base(model)
    rewritten = onnx.load_from_string(template_bytes(model, {k: t.numpy() for k, t in base.state.items()}))
    ops = [node.op_type for node in rewritten.graph.node]
    assert "Resize" not in ops and ops.count("DepthToSpace") == len(base.spec.expand) + 1 and "SpaceToDepth" in ops
    plain = ort.InferenceSession(export_onnx(base.build()), providers=["CPUExecutionProvider"])
    ours = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for shape in [(2, 3, 68, 100), (1, 3, 16, 16), (1, 3, 36, 20)]:
        x = rng.random(shape, dtype=np.float32)
        expected = plain.run(None, {"image": x})[0]
        got = ours.run(None, {"image": x})[0]
        assert got.shape == expected.shape == shape
        assert np.abs(got - expected).max() <= 1e-5, shape


def test_template_refuses_weights_that_do_not_fit():
    state = read_base("fast").state
    with pytest.raises(InputError, match="does not fit"):
        template_bytes("fast", {k: v for k, v in state.items() if k != "output.norm.bias"})
    with pytest.raises(InputError, match="of shape"):
        template_bytes("fast", {**state, "output.norm.bias": np.zeros(4, np.float32)})
    with pytest.raises(InputError, match="no ONNX template"):
        template_bytes("nonesuch", state)


def test_the_lean_model_modules_do_not_import_torch():
    code = ("import sys, rtstyle.model.weights, rtstyle.model.templates, rtstyle.model.adapters, "
            "rtstyle.model.styles, rtstyle.model.spec\n"
            "from rtstyle.model.styles import StyleChoice\n"
            "from rtstyle.model.templates import template_bytes\n"
            "from rtstyle.model.weights import fuse_weights, read_base\n"
            "template_bytes('fast', fuse_weights(read_base('fast'), StyleChoice().resolve('fast')))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    assert_runs(code)


def test_the_lean_path_does_not_import_onnx_either():
    """A photo's start: the lean path reads committed graph bytes, with no protobuf rewritten (50 ms of import)."""
    code = ("import sys, numpy as np\n"
            "from rtstyle.api import load_stylizer, restyle\n"
            "from rtstyle.config import EngineConfig\n"
            "from rtstyle.model.styles import StyleChoice\n"
            "s = load_stylizer('quality', StyleChoice({'mosaic': 1.0}), EngineConfig(device='cpu'))\n"
            "s([np.zeros((32, 48, 3), np.uint8)])\n"
            "assert restyle(s, 'quality', StyleChoice({'woodcut': 1.0}))\n"
            "assert 'onnx' not in sys.modules and 'torch' not in sys.modules, 'onnx or torch was imported'\n")
    assert_runs(code)


def assert_runs(code: str) -> None:
    """`code` runs in a fresh interpreter (what a process imports is only visible there)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_template_index_matches_the_template():
    """The index beside each template (read where the onnx package is not imported) says what it holds."""
    import onnx

    from rtstyle.model.spec import BUILTIN_SPECS
    from rtstyle.model.templates import has_template, index_path, template_index, template_path

    for base_id, spec in BUILTIN_SPECS.items():
        model = onnx.load(str(template_path(base_id)), load_external_data=False)
        index = template_index(base_id)
        assert index_path(base_id).is_file() and has_template(base_id, spec)
        assert index["initializers"] == {init.name: list(init.dims) for init in model.graph.initializer}
        assert index["spec"] == spec.to_json()
