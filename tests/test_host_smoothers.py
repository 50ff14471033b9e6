"""Torch-free host smoothers: each one is its torch twin on NHWC numpy frames."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rtstyle.errors import InputError
from rtstyle.temporal import flow
from rtstyle.temporal.host import (
    HostNoSmoothing,
    HostSmoother,
    identity_grid,
    make_host_smoother,
    remap,
)
from rtstyle.temporal.smoothers import make_smoother

KINDS = ("none", "ema", "adaptive", "flow")


@pytest.fixture(scope="module")
def real_frames(shared_data) -> list[np.ndarray]:
    """5 real consecutive frames, 320x136 (the clip's aspect), uint8 RGB."""
    from PIL import Image

    paths = sorted((shared_data / "frames" / "sintel_raft_demo").glob("frame_*.png"))[:5]
    return [np.array(Image.open(p).convert("RGB").resize((320, 136))) for p in paths]


def random_stylized(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((height, width, 3), dtype=np.float32) for _ in range(count)]


def torch_outputs(kind: str, frames: list[np.ndarray], stylized: list[np.ndarray]) -> list[np.ndarray]:
    smoother = make_smoother(kind, 0.7)
    outputs = (smoother(f, torch.from_numpy(s).permute(2, 0, 1)) for f, s in zip(frames, stylized))
    return [out.permute(1, 2, 0).numpy() for out in outputs]


@pytest.mark.parametrize("kind", KINDS)
def test_host_smoother_matches_torch_on_real_frames(kind, real_frames):
    stylized = random_stylized(len(real_frames), *real_frames[0].shape[:2])
    host = make_host_smoother(kind, 0.7)
    for frame, styl, expected in zip(real_frames, stylized, torch_outputs(kind, real_frames, stylized)):
        diff = np.abs(host(frame, styl) - expected)
        assert diff.mean() < 1e-3
        if kind != "flow":
            assert diff.max() < 2e-2
        else:
            # The flow mask is a threshold: remap and grid_sample differ by ~3e-5, which flips a few
            # borderline pixels (3 of 43520 measured) and their difference fades over later frames.
            # A missing mask or a wrong flow direction moves ~10% of the pixels by far more.
            assert np.mean(diff > 2e-2) < 1e-3


def test_flow_helpers_are_flow_warp_and_valid_mask(real_frames):
    """The cached-grid warp and the fast mask give the bits `flow.warp` and `flow.valid_mask` give."""
    estimator = flow.FlowEstimator("ultrafast", 480)
    a, b = (flow.to_gray(f) for f in (real_frames[0], real_frames[3]))
    backward, forward = estimator(b, a), estimator(a, b)
    maps = identity_grid(*backward.shape[:2]) + backward
    image = random_stylized(1, *backward.shape[:2])[0]
    assert np.array_equal(remap(image, maps), flow.warp(image, backward))
    expected = flow.valid_mask(backward, forward)
    assert 0.05 < expected.mean() < 0.999
    assert np.array_equal(flow.valid_mask_warped(backward, remap(forward, maps)), expected)
    # The written-out sums are Ruder et al.'s check, bit for bit, as plain numpy reductions state it.
    at_target = flow.warp(forward, backward)
    occluded = np.sum((at_target + backward) ** 2, -1) > 0.01 * (
        np.sum(at_target**2, -1) + np.sum(backward**2, -1)) + 0.5
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    boundary = du_x**2 + du_y**2 + dv_x**2 + dv_y**2 > 0.01 * np.sum(backward**2, -1) + 0.002
    assert np.array_equal(expected, (~occluded & ~boundary).astype(np.float32))


def test_box_filter_is_avg_pool_with_zero_padding():
    change = np.random.default_rng(1).random((40, 50), dtype=np.float32)
    pooled = F.avg_pool2d(torch.from_numpy(change)[None, None], 7, stride=1, padding=3)[0, 0].numpy()
    boxed = cv2.boxFilter(change, -1, (7, 7), normalize=True, borderType=cv2.BORDER_CONSTANT)
    np.testing.assert_allclose(boxed, pooled, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_apply_batch_is_frame_by_frame_and_state_is_private(kind, real_frames):
    stylized = random_stylized(len(real_frames), *real_frames[0].shape[:2], seed=2)
    one_by_one = make_host_smoother(kind, 0.6)
    expected = [one_by_one(f, s).copy() for f, s in zip(real_frames, stylized)]
    batched = make_host_smoother(kind, 0.6)
    first = batched.apply_batch(real_frames[:2], np.stack(stylized[:2]))
    first[:] = -1.0  # the caller's array: scribbling on it must not reach the next blend
    rest = batched.apply_batch(real_frames[2:], np.stack(stylized[2:]))
    assert rest.shape == (3, *stylized[0].shape) and rest.dtype == np.float32
    np.testing.assert_array_equal(rest, np.stack(expected[2:]))


@pytest.mark.parametrize("kind", KINDS)
def test_views_of_any_layout_are_taken(kind, real_frames):
    """A stylized frame may be a view (NCHW output transposed to HWC): the result is the same as for
    a contiguous copy, and nothing of the view's layout reaches OpenCV's outputs."""
    stylized = random_stylized(3, *real_frames[0].shape[:2], seed=5)
    views = [np.ascontiguousarray(s.transpose(2, 0, 1)).transpose(1, 2, 0) for s in stylized]
    assert not views[0].flags.c_contiguous
    contiguous, viewed = make_host_smoother(kind, 0.6), make_host_smoother(kind, 0.6)
    for frame, plain, view in zip(real_frames, stylized, views):
        np.testing.assert_array_equal(viewed(frame, view), contiguous(frame, plain))


@pytest.mark.parametrize("kind", ("ema", "adaptive", "flow"))
def test_first_frame_reset_and_size_change_pass_through(kind, real_frames):
    small = [cv2.resize(f, (160, 68), interpolation=cv2.INTER_AREA) for f in real_frames[:2]]
    a, b = random_stylized(2, 136, 320, seed=3)
    smoother = make_host_smoother(kind, 0.9)
    np.testing.assert_array_equal(smoother(real_frames[0], a), a)
    assert not np.array_equal(smoother(real_frames[1], b), b)
    c = random_stylized(1, 68, 160, seed=4)[0]
    np.testing.assert_array_equal(smoother(small[0], c), c)
    smoother.reset()
    np.testing.assert_array_equal(smoother(real_frames[1], b), b)


def test_no_smoothing_is_passthrough():
    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    outputs = np.random.default_rng(5).random((2, 8, 8, 3), dtype=np.float32)
    smoother = make_host_smoother("none", 0.7)
    assert isinstance(smoother, HostNoSmoothing) and smoother.passthrough
    assert smoother.apply_batch(frames, outputs) is outputs
    single = outputs[1]
    assert smoother(frames[0], single) is single
    assert not any(make_host_smoother(kind, 0.7).passthrough for kind in KINDS[1:])


def test_bad_settings_match_the_torch_errors():
    for kind, strength in (("blur", 0.5), ("ema", 1.5), ("flow", -0.1)):
        with pytest.raises(InputError) as host:
            make_host_smoother(kind, strength)
        with pytest.raises(InputError) as device:
            make_smoother(kind, strength)
        assert str(host.value) == str(device.value)
    assert isinstance(make_host_smoother("adaptive", 0.95), HostSmoother)


def test_import_pulls_in_no_torch():
    code = "import sys, rtstyle.temporal.host; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_flow_runs_at_a_size_chosen_for_the_frame():
    """Half the frame's long side up to 768 px, all but 384 px above it; at least 256, at most 960,
    never above the frame's own; in proportion."""
    from rtstyle.temporal.host import flow_side, small_size

    sizes = ((120, 160), (240, 320), (360, 640), (480, 640), (436, 1024), (720, 1280), (1080, 1920), (2160, 3840))
    assert [flow_side(h, w) for h, w in sizes] == [160, 256, 320, 320, 640, 896, 960, 960]
    assert flow_side(432, 768) == 384 and flow_side(433, 769) == 385  # no step where the rules meet
    assert small_size(1080, 1920, 480) == (480, 270) and small_size(1920, 1080, 480) == (270, 480)
    assert small_size(120, 160, 320) == (160, 120)  # a small frame keeps its size


def test_the_larger_flow_leaves_less_flicker_along_the_true_motion(shared_data):
    """Sintel's frame 2 -> 3 ships its true flow: with the flow at the rule's 640 px for 1024x436
    (not the 480 px of the old rule) a calm style keeps under 0.3 of its per-frame flicker, measured
    along the true motion, with Lai et al.'s mask made from the truth (benchmarks/temporal_truth.py)."""
    from PIL import Image

    from rtstyle.api import load_stylizer
    from rtstyle.config import SMOOTH_STRENGTH, EngineConfig
    from rtstyle.model.styles import StyleChoice
    from rtstyle.temporal.host import HostFlow, flow_side

    clip = shared_data / "frames" / "sintel_alley_1_clean_gt"
    frames = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(clip.glob("frame_*.png"))]
    raw = np.fromfile(clip / "gt" / "frame_0002.flo", np.float32)
    width, height = raw[1:3].view(np.int32)
    true_flow = raw[3:].reshape(height, width, 2)
    maps = identity_grid(height, width) + true_flow
    du_y, du_x = np.gradient(true_flow[..., 0])
    dv_y, dv_x = np.gradient(true_flow[..., 1])
    mask = ((np.asarray(Image.open(clip / "gt" / "occlusions" / "frame_0002.png")) == 0)
            & (np.asarray(Image.open(clip / "gt" / "invalid" / "frame_0002.png")) == 0)
            & (maps[..., 0] >= 0) & (maps[..., 0] <= width - 1) & (maps[..., 1] >= 0) & (maps[..., 1] <= height - 1)
            & (du_x**2 + du_y**2 + dv_x**2 + dv_y**2 <= 0.01 * (true_flow**2).sum(-1) + 0.002))

    def true_warp_error(outputs):
        moved = cv2.remap(outputs[2].astype(np.float32) / 255, maps, None, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        return float((((outputs[1].astype(np.float32) / 255 - moved) ** 2).sum(-1))[mask].mean())

    def smoothed(side):
        smoother = HostFlow(SMOOTH_STRENGTH, flow_side=side)
        return [(np.clip(smoother(f, s.astype(np.float32) / 255), 0, 1) * 255 + 0.5).astype(np.uint8)
                for f, s in zip(frames, per_frame)]

    stylizer = load_stylizer("fast", StyleChoice({"color-field": 1.0}), EngineConfig(backend="onnx", device="cpu"))
    per_frame = stylizer(frames)
    assert flow_side(height, width) == 640
    per_frame_error = true_warp_error(per_frame)
    now, before = true_warp_error(smoothed(None)) / per_frame_error, true_warp_error(smoothed(480)) / per_frame_error
    assert now < 0.3 < before and now < 0.92 * before, (now, before)
