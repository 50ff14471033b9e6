"""Smoothers and the warping-error metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtstyle.errors import InputError
from rtstyle.io.synthetic import scene_frame
from rtstyle.temporal.metrics import warping_error
from rtstyle.temporal.smoothers import make_smoother


def moving_scene(count=6, width=96, height=64):
    return [scene_frame(i, width, height, fps=6) for i in range(count)]


def test_warping_error_zero_for_steady_output_and_high_for_flicker():
    frames = moving_scene()
    assert warping_error(frames, frames) < 0.01
    rng = np.random.default_rng(0)
    flicker = [rng.integers(0, 256, f.shape, dtype=np.uint8) for f in frames]
    assert warping_error(frames, flicker) > 0.1
    with pytest.raises(ValueError):
        warping_error(frames, frames[:-1])


def test_ema_blends_with_previous_output_and_zero_strength_is_identity():
    content = moving_scene(2)
    a, b = torch.zeros(3, 64, 96), torch.ones(3, 64, 96)
    ema = make_smoother("ema", 0.25)
    assert torch.equal(ema(content[0], a), a)
    torch.testing.assert_close(ema(content[1], b), torch.full_like(b, 0.75))
    still = make_smoother("flow", 0.0)
    still(content[0], a)
    assert torch.equal(still(content[1], b), b)


def test_adaptive_follows_motion_and_holds_static_areas():
    frame = scene_frame(0, 96, 64)
    moved = frame.copy()
    moved[:, :48] = 255 - moved[:, :48]  # left half changes, right half does not
    smoother = make_smoother("adaptive", 0.8)
    smoother(frame, torch.zeros(3, 64, 96))
    out = smoother(moved, torch.ones(3, 64, 96))
    assert out[:, :, :40].mean() > 0.95  # changed input: take the new stylization
    assert out[:, :, 60:].mean() < 0.3  # static input: keep the previous output


def test_bad_smoother_settings():
    with pytest.raises(InputError):
        make_smoother("blur", 0.5)
    with pytest.raises(InputError):
        make_smoother("ema", 1.5)


def test_flow_smoothing_cuts_warping_error_on_real_frames(shared_data):
    """On real consecutive frames, flow smoothing steadies the output without repainting it."""
    from PIL import Image

    from rtstyle.api import load_stylizer
    from rtstyle.config import EngineConfig
    from rtstyle.model.styles import StyleChoice

    paths = sorted((shared_data / "frames" / "sintel_raft_demo").glob("frame_*.png"))[:6]
    frames = [np.asarray(Image.open(p).convert("RGB").resize((384, 164))) for p in paths]
    stylizer = load_stylizer("quality", StyleChoice({"starry-swirl": 1.0}), EngineConfig(device="cpu", backend="torch"))
    smoother = make_smoother("flow", 0.7)  # the stream's own: the stylizer stays stateless
    per_frame = [stylizer([f])[0] for f in frames]
    steady = [stylizer.submit([f], smoother.apply_batch).result()[0] for f in frames]
    assert [a.tobytes() for a in per_frame] == [stylizer([f])[0].tobytes() for f in frames]
    before, after = warping_error(frames, per_frame), warping_error(frames, steady)
    assert after < 0.7 * before
    mad = np.mean([np.abs(a.astype(np.float32) - b) for a, b in zip(steady, per_frame)]) / 255
    assert mad < 0.05


def test_device_mask_matches_the_host_mask_on_real_flow(shared_data):
    """The flow smoother's on-device mask is the metric's host mask, computed on tensors."""
    from PIL import Image

    from rtstyle.temporal.flow import FlowEstimator, valid_mask
    from rtstyle.temporal.smoothers import valid_mask_tensor

    paths = sorted((shared_data / "frames" / "sintel_alley_1_clean_gt").glob("frame_*.png"))
    # Three frames apart: enough motion for occlusions and motion boundaries to appear.
    a, b = (np.asarray(Image.open(p).convert("RGB").resize((256, 110))) for p in (paths[0], paths[3]))
    flow = FlowEstimator("ultrafast", 128)
    backward, forward = flow(b, a), flow(a, b)
    host = valid_mask(backward, forward)
    device = valid_mask_tensor(torch.from_numpy(backward), torch.from_numpy(forward))[0].numpy()
    assert 0.05 < host.mean() < 0.999  # both kinds of pixel are there to compare
    assert np.mean(host != device) < 0.002  # bilinear taps at x.5 may round either way


def test_device_flow_is_the_host_flow_scaled_up():
    from rtstyle.temporal.smoothers import FlowSmoother

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (90, 200, 3), dtype=np.uint8)
    b = np.roll(a, 3, axis=1)
    smoother = FlowSmoother(0.5, flow_max_side=100)
    on_device = smoother._flow_on_device(b, a, torch.device("cpu")).numpy()
    host = smoother.flow(b, a)
    assert on_device.shape == host.shape == (90, 200, 2)
    assert np.abs(on_device - host).max() < 1e-3
