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
    plain = load_stylizer("quality", StyleChoice({"starry-swirl": 1.0}), EngineConfig(device="cpu", backend="torch"))
    smoothed = load_stylizer("quality", StyleChoice({"starry-swirl": 1.0}), EngineConfig(device="cpu", backend="torch"),
                             smooth="flow", smooth_strength=0.7)
    per_frame = [plain([f])[0] for f in frames]
    steady = [smoothed([f])[0] for f in frames]
    before, after = warping_error(frames, per_frame), warping_error(frames, steady)
    assert after < 0.7 * before
    mad = np.mean([np.abs(a.astype(np.float32) - b) for a, b in zip(steady, per_frame)]) / 255
    assert mad < 0.05
