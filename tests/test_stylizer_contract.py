"""One contract for every stylizer: the lean one, the torch one on each CPU engine (eager, jit, compile, onnx),
a scheduled one, and a serve viewer's view of the shared engine. Frames come back in order, each as it would
alone; a style set in place equals a fresh build of it; uint16 frames come back uint16 at the same levels;
preserve-color keeps the input's chroma under the style's luminance."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from rtstyle.config import EngineConfig
from rtstyle.io.color import keep_colors
from rtstyle.model.styles import StyleChoice

MODEL = "quality"  # its built-in styles share conv weights: set_norms reaches every one of them
FIRST, SECOND = "mosaic", "woodcut"
KINDS = ["lean", "torch", "jit", "compile", "onnx", "scheduled", "serve-view"]
TOLERANCE = 2  # levels of 255: float rounding between batch sizes and paths


def _build(kind: str, style: str):
    """A fresh stylizer of `kind` painting `style`."""
    from rtstyle.api import load_scheduled_stylizer, load_stylizer
    from rtstyle.stylizers.schedule import StyleSchedule

    choice = StyleChoice({style: 1.0})
    if kind == "lean":
        return load_stylizer(MODEL, choice, EngineConfig(device="cpu"))
    if kind in ("torch", "jit", "compile", "onnx"):
        pytest.importorskip("torch")
        return load_stylizer(MODEL, choice, EngineConfig(device="cpu", backend=kind), lean=False)
    if kind == "scheduled":
        return load_scheduled_stylizer(MODEL, StyleSchedule(((0.0, style),)), engine=EngineConfig(device="cpu"))
    if kind == "serve-view":
        pytest.importorskip("aiortc")

        return _shared_engine().build(style, 1.0)
    raise AssertionError(kind)


@functools.cache
def _shared_engine():
    from rtstyle.serve.engine import SharedEngine

    return SharedEngine(MODEL, EngineConfig(device="cpu"))


@functools.cache
def _built(kind: str, style: str):
    try:
        return _build(kind, style)
    except Exception as exc:  # compile needs a working C++ toolchain for Inductor: skip, do not fail, without one
        if kind == "compile":
            pytest.skip(f"torch.compile does not work here: {exc}")
        raise


def frames(count: int = 3, height: int = 52, width: int = 76) -> list[np.ndarray]:
    """Distinct pictures (gradients and shapes that differ per frame); sides multiples of 4 but not of 8."""
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for index in range(count):
        image = np.stack([(x * (3 + index)) % 256, (y * (5 - index)) % 256, ((x + y) * 2 + 60 * index) % 256], -1)
        image[10 + 5 * index: 30 + 5 * index, 20: 40 + 6 * index] = (250, 30 * index, 90)
        out.append(image.astype(np.uint8))
    return out


def assert_close(got: np.ndarray, expected: np.ndarray, tolerance: int = TOLERANCE) -> None:
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert np.abs(got.astype(np.int64) - expected.astype(np.int64)).max() <= tolerance


@pytest.mark.parametrize("kind", KINDS)
def test_frames_come_back_in_order_each_as_it_would_alone(kind):
    stylizer = _built(kind, FIRST)
    inputs = frames()
    alone = [stylizer([image])[0] for image in inputs]
    pending = [stylizer.submit(inputs[:2]), stylizer.submit(inputs[2:])]
    together = [frame for batch in pending for frame in batch.result()]
    assert len(together) == 3
    for got, expected in zip(together, alone):
        assert_close(got, expected)
    assert np.abs(alone[0].astype(int) - alone[1].astype(int)).mean() > 5  # different frames, different outputs


@pytest.mark.parametrize("kind", KINDS)
def test_a_style_set_in_place_equals_a_fresh_build(kind):
    from rtstyle.api import fused_style

    image = frames(1)[0]
    fresh = _built(kind, SECOND)([image])[0]
    first = _built(kind, FIRST)
    before = first([image])[0]
    assert np.abs(fresh.astype(int) - before.astype(int)).mean() > 5  # two styles that look different
    if kind == "serve-view":  # a viewer's new style is a new view on the shared engine, then back
        assert_close(_shared_engine().build(SECOND, 1.0)([image])[0], fresh)
        assert_close(first([image])[0], before)
        return
    if not first.conv_key:
        assert kind == "jit"  # TorchScript's freeze holds the norms in its graph: rebuilt per style instead
        return
    first.set_norms(fused_style(MODEL, StyleChoice({SECOND: 1.0})).norms)
    try:
        assert_close(first([image])[0], fresh)
    finally:
        first.set_norms(fused_style(MODEL, StyleChoice({FIRST: 1.0})).norms)
    assert_close(first([image])[0], before)


@pytest.mark.parametrize("kind", KINDS)
def test_sixteen_bit_frames_come_back_sixteen_bit_at_the_same_levels(kind):
    stylizer = _built(kind, FIRST)
    image = frames(1)[0]
    deep = image.astype(np.uint16) * 257
    out = stylizer([deep])[0]
    assert out.dtype == np.uint16 and out.shape == deep.shape
    assert_close((out.astype(np.float64) / 257).round().astype(np.uint8), stylizer([image])[0])
    assert len(np.unique(out)) > 256  # the extra depth is used, not eight bits shifted up


@pytest.mark.parametrize("kind", KINDS)
def test_preserve_color_keeps_the_inputs_chroma(kind):
    stylizer = _built(kind, FIRST)
    image = frames(1)[0]
    plain = stylizer([image])[0]
    target = stylizer.stylizer if kind == "serve-view" else stylizer  # a view's flag is its shared stylizer's
    target.preserve_color = True
    try:
        kept = stylizer([image])[0]
    finally:
        target.preserve_color = False
    expected = keep_colors(image[None].astype(np.float32) / 255, plain[None].astype(np.float32) / 255, axis=3)
    expected = (np.clip(expected[0], 0, 1) * 255 + 0.5).astype(np.uint8)
    assert_close(kept, expected, tolerance=3)
    assert np.abs(kept.astype(int) - plain.astype(int)).mean() > 3  # the colours did change
