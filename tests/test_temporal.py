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


def smooth_clip(path, kind, strength, frames, stylized, **options):
    """(smoother, outputs): `stylized` (H, W, 3 float32 arrays) smoothed one frame at a time by the
    host or the torch smoother of `kind`, outputs as arrays."""
    from rtstyle.temporal.host import make_host_smoother

    if path == "host":
        smoother = make_host_smoother(kind, strength, **options)
        return smoother, [smoother(f, s).copy() for f, s in zip(frames, stylized)]
    smoother = make_smoother(kind, strength, **options)
    return smoother, [smoother(f, torch.from_numpy(s).permute(2, 0, 1)).permute(1, 2, 0).numpy()
                      for f, s in zip(frames, stylized)]


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
    ema = make_smoother("ema", 0.25, drift_cap=False)  # the blend itself; the cap has its own test
    assert torch.equal(ema(content[0], a), a)
    torch.testing.assert_close(ema(content[1], b), torch.full_like(b, 0.75))
    still = make_smoother("flow", 0.0)
    still(content[0], a)
    assert torch.equal(still(content[1], b), b)


def test_adaptive_follows_motion_and_holds_static_areas():
    frame = scene_frame(0, 96, 64)
    moved = frame.copy()
    moved[:, :48] = 255 - moved[:, :48]  # left half changes, right half does not
    # Half the picture inverted is a scene cut to the detector (which would pass the frame through
    # whole): the adaptive weight alone is what this checks.
    smoother = make_smoother("adaptive", 0.8, cuts=False, drift_cap=False)
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


def test_device_confidence_matches_the_host_confidence_on_real_frames(shared_data):
    """The torch flow smoother's confidence is the host's, computed on tensors."""
    import cv2
    from PIL import Image

    from rtstyle.temporal.host import flow_confidence, identity_grid
    from rtstyle.temporal.smoothers import flow_confidence_tensor
    from rtstyle.temporal.smoothers import identity_grid as device_grid

    paths = sorted((shared_data / "frames" / "sintel_alley_1_clean_gt").glob("frame_*.png"))
    a, b = (cv2.cvtColor(np.asarray(Image.open(p).convert("RGB").resize((256, 110))), cv2.COLOR_RGB2GRAY)
            for p in (paths[0], paths[3]))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    backward, forward = dis.calc(b, a, None), dis.calc(a, b, None)
    host = flow_confidence(b, a, backward, forward, identity_grid(110, 256))
    device = flow_confidence_tensor(*(torch.from_numpy(x) for x in (b, a, backward, forward)),
                                    device_grid(110, 256, torch.device("cpu")))[0].numpy()
    assert 0.05 < host.mean() < 0.99 and 0.05 < np.mean((host > 0) & (host < 1))  # soft values are there
    assert np.mean(np.abs(host - device) > 1e-3) < 0.002  # bilinear taps at x.5 may round either way


def cut_clip(width=160, height=96):
    """Five frames of one moving scene, then a hard cut to a photo and two frames of it, slowly moving."""
    import cv2

    from rtstyle.io.synthetic import scene_frame

    first = [scene_frame(i, width, height, fps=12) for i in range(5)]
    photo = cv2.resize(np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(
        SHARED / "content" / "kodim05.png").convert("RGB")), (width + 8, height), interpolation=cv2.INTER_AREA)
    second = [np.ascontiguousarray(photo[:, i:i + width]) for i in range(0, 6, 2)]
    return first + second, len(first)


SHARED = __import__("pathlib").Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.mark.parametrize("path", ["torch", "host"])
@pytest.mark.parametrize("kind", ["none", "ema", "adaptive", "flow"])
def test_every_smoother_restarts_at_a_hard_cut(kind, path, shared_data):
    """The first frame after a cut is its own stylization (within 1 level), however strong the blend."""
    from rtstyle.temporal.host import make_host_smoother

    frames, cut = cut_clip()
    rng = np.random.default_rng(0)
    stylized = [rng.random((96, 160, 3), dtype=np.float32) for _ in frames]
    smoother, outputs = smooth_clip(path, kind, 0.9, frames, stylized)
    levels = [255 * float(np.abs(o - s).mean()) for o, s in zip(outputs, stylized)]
    assert levels[cut] <= 1.0
    if kind != "none":
        assert smoother.cuts_seen == 1
        # Before the cut it does blend (up to the drift cap, 0.042 x 0.9 x 255 = 9.6 levels): the reset
        # is what made the difference.
        assert min(levels[1:cut]) > 4
        assert levels[cut + 1] > 3  # and it blends again inside the new shot (flow: 8, measured)
    without = (make_host_smoother if path == "host" else make_smoother)(kind, 0.9, cuts=False)
    assert without.cuts is None


def test_cut_detector_fires_on_the_real_cut_only(shared_data):
    """big_buck_bunny_cut.mp4 has one hard cut (frame 235 of 240): found, and nothing else."""
    from rtstyle.io.video import VideoReader
    from rtstyle.temporal.cuts import CutDetector

    detector = CutDetector()
    with VideoReader(shared_data / "video" / "big_buck_bunny_cut.mp4") as reader:
        cuts = [i for i, frame in enumerate(reader) if detector(frame.image)]
    assert cuts == [235]


def test_cut_detector_adaptive_threshold_and_reset():
    from rtstyle.temporal.cuts import CutDetector, CutSettings

    gray = [np.full((40, 60, 3), v, np.uint8) for v in (100, 120, 121, 120, 121, 120, 121, 120, 140)]
    detector = CutDetector(CutSettings(threshold=100, min_score=5))
    # Jumps of 20 levels of value: below ContentDetector's 27. The first comes with no baseline of
    # recent scores, so it is not a cut; the last is far above the recent mean, so it is.
    assert [detector(g) for g in gray] == [False] * 8 + [True]
    assert detector.last_score == pytest.approx(20 / 3, abs=0.5)
    detector.reset()
    assert not detector(gray[0])  # after a reset the next frame has nothing to be cut from
    assert not detector(np.zeros((20, 30, 3), np.uint8))  # nor does a frame of a new size


@pytest.mark.parametrize("path", ["torch", "host"])
def test_flow_confidence_falls_where_content_changes(path, shared_data):
    """A still camera, and a patch of the picture replaced by other content: the flow may well call it
    still, but the input no longer matches itself there, so the past must not be blended in."""
    import cv2
    from PIL import Image

    from rtstyle.temporal import host
    from rtstyle.temporal import smoothers as device

    def photo(name):
        return cv2.resize(np.asarray(Image.open(shared_data / "content" / name).convert("RGB")), (192, 128),
                          interpolation=cv2.INTER_AREA)

    a = photo("kodim05.png")
    b = a.copy()
    b[40:88, 60:120] = photo("kodim14.png")[40:88, 60:120]
    grayish = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b)]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    backward, forward = dis.calc(grayish[1], grayish[0], None), dis.calc(grayish[0], grayish[1], None)

    def confidence(brightness):
        if path == "host":
            return host.flow_confidence(grayish[1], grayish[0], backward, forward, host.identity_grid(128, 192),
                                        brightness)
        tensors = (torch.from_numpy(x) for x in (grayish[1], grayish[0], backward, forward))
        return device.flow_confidence_tensor(*tensors, device.identity_grid(128, 192, torch.device("cpu")),
                                             brightness)[0].numpy()

    full = confidence(True)
    inside, outside = full[44:84, 64:116], np.concatenate([full[:30].ravel(), full[100:].ravel()])
    assert inside.mean() < 0.25  # measured 0.19
    assert outside.mean() > 0.9  # measured 0.985
    # The forward-backward check alone lets much of the changed patch through: brightness constancy
    # is what rejects it.
    assert confidence(False)[44:84, 64:116].mean() > inside.mean() + 0.3  # measured 0.63


@pytest.mark.parametrize("path", ["torch", "host"])
@pytest.mark.parametrize("kind", ["ema", "adaptive", "flow"])
def test_strength_is_a_drift_budget_whatever_the_flicker(kind, path):
    """A calm and a wildly flickering stylization of the same clip: at the same strength neither frame
    moves further from its own stylization than SMOOTH_DRIFT_PER_STRENGTH x strength; the calm one,
    well inside the budget, is blended exactly as without the cap."""
    from rtstyle.config import SMOOTH_DRIFT_PER_STRENGTH

    frames = moving_scene(6, 160, 96)
    rng = np.random.default_rng(1)
    # A "style" that follows the picture (the input, dimmed), plus a little or a lot of flicker.
    base = [f.astype(np.float32) / 510 + 0.25 for f in frames]
    calm = [b + rng.normal(0, 0.005, b.shape).astype(np.float32) for b in base]
    wild = [np.clip(b + rng.normal(0, 0.2, b.shape), 0, 1).astype(np.float32) for b in base]

    def run(stylized, cap):
        return smooth_clip(path, kind, 0.7, frames, stylized, drift_cap=cap)[1]

    def drifts(out, stylized):
        return [float(np.abs(o - s).mean()) for o, s in zip(out, stylized)]

    budget = SMOOTH_DRIFT_PER_STRENGTH * 0.7
    wild_capped, wild_free = drifts(run(wild, True), wild), drifts(run(wild, False), wild)
    assert max(wild_capped) < 1.05 * budget  # estimated on 1/9 of the pixels
    assert np.mean(wild_free[1:]) > 2 * budget  # without the cap it would drift much further
    calm_capped, calm_free = run(calm, True), run(calm, False)
    assert max(drifts(calm_capped, calm)) < budget / 2
    np.testing.assert_allclose(np.stack(calm_capped), np.stack(calm_free), atol=1e-6)


@pytest.mark.parametrize("path", ["torch", "host"])
@pytest.mark.parametrize("kind", ["ema", "flow"])
def test_drift_budget_holds_for_flicker_on_a_four_pixel_grid(kind, path):
    """The networks' two 2x upsamplings leave texture with a period of 4 pixels. Flicker that lives
    off every 4th row and column is invisible to an estimate on every 4th pixel, which then let a
    frame drift past the budget; the estimate must see it."""
    from rtstyle.config import SMOOTH_DRIFT_PER_STRENGTH

    frames = moving_scene(5, 160, 96)
    rng = np.random.default_rng(2)
    off_grid = np.ones((96, 160, 1), np.float32)
    off_grid[::4] = 0
    off_grid[:, ::4] = 0
    stylized = [np.clip(0.5 + off_grid * rng.choice([-0.25, 0.25], (96, 160, 3)), 0, 1).astype(np.float32)
                for _ in frames]
    _, outputs = smooth_clip(path, kind, 0.7, frames, stylized)
    drifts = [float(np.abs(o - s).mean()) for o, s in zip(outputs, stylized)]
    assert max(drifts) < 1.05 * SMOOTH_DRIFT_PER_STRENGTH * 0.7
    assert max(drifts) > 0.8 * SMOOTH_DRIFT_PER_STRENGTH * 0.7  # the blend did run, up to the budget


@pytest.mark.parametrize("path", ["torch", "host"])
def test_confidence_trusts_a_warp_that_matches_where_the_flow_check_fails(path, shared_data):
    """A photo moved 3 pixels right with sensor noise, with the true backward flow, and a forward flow that disagrees
    everywhere: the forward-backward check fails, but the warped input matches the frame, so the
    flow is trusted. Where a patch was replaced by other content it matches nothing and stays
    rejected; and without the brightness terms nothing is rescued."""
    import cv2
    from PIL import Image

    from rtstyle.temporal import host
    from rtstyle.temporal import smoothers as device

    def photo(name):
        return cv2.cvtColor(cv2.resize(np.asarray(Image.open(shared_data / "content" / name).convert("RGB")),
                                       (200, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)

    last = photo("kodim05.png")
    noise = np.random.default_rng(3).normal(0, 2, last.shape)  # a camera's: well below MATCH_LOW on average
    gray = np.clip(np.roll(last, 3, axis=1) + noise, 0, 255).astype(np.uint8)
    gray[40:88, 80:140] = photo("kodim14.png")[40:88, 80:140]
    backward = np.zeros((128, 200, 2), np.float32)
    backward[..., 0] = -3.0
    forward = np.zeros_like(backward)  # "nothing moved": disagrees with the backward flow everywhere

    def confidence(brightness):
        if path == "host":
            return host.flow_confidence(gray, last, backward, forward, host.identity_grid(128, 200), brightness)
        tensors = (torch.from_numpy(x) for x in (gray, last, backward, forward))
        return device.flow_confidence_tensor(*tensors, device.identity_grid(128, 200, torch.device("cpu")),
                                             brightness)[0].numpy()

    full = confidence(True)
    assert full[8:32, 8:190].mean() > 0.95  # matched: trusted
    assert full[46:82, 86:134].mean() < 0.05  # new content: rejected
    assert full[:, :3].max() == 0  # came from outside the last frame
    assert confidence(False).max() == 0  # the flow check alone trusts none of it


def test_flow_pair_is_both_flows_in_sequence(shared_data):
    """The two flows computed at once on two threads are the flows computed one after the other."""
    import cv2
    from PIL import Image

    from rtstyle.temporal.flow import FlowPair, create_dis, to_gray

    paths = sorted((shared_data / "frames" / "sintel_alley_1_clean_gt").glob("frame_*.png"))[:2]
    last, gray = (to_gray(np.asarray(Image.open(p).convert("RGB").resize((256, 110)))) for p in paths)
    backward, forward = FlowPair("fine")(gray, last)
    dis = create_dis("fine")
    np.testing.assert_array_equal(backward, dis.calc(gray, last, None))
    np.testing.assert_array_equal(forward, dis.calc(last, gray, None))
    with pytest.raises(cv2.error, match="sameSize"):
        FlowPair("fine")(gray, last[:50])  # a failure on either thread reaches the caller


@pytest.mark.parametrize("path", ["torch", "host"])
@pytest.mark.parametrize("kind", ["ema", "adaptive", "flow"])
def test_a_dissolve_leaves_no_ghost_beyond_the_drift_budget(kind, path, shared_data):
    """A cross-fade between two shots is no cut (no frame changes enough), so the blend goes on; but
    with a stylization that follows the picture exactly, what the smoother adds is pure ghost, and
    it stays within the drift budget (7.5 levels at 0.7; measured with the drift estimated on 1/16 of
    the pixels: ema 7.4, adaptive 2.7, flow 7.7, against 15.4, 2.7 and 14.4 without the cap)."""
    import cv2
    from PIL import Image

    from rtstyle.config import SMOOTH_DRIFT_PER_STRENGTH

    big = cv2.resize(np.asarray(Image.open(shared_data / "content" / "kodim13.png").convert("RGB")), (384, 256),
                     interpolation=cv2.INTER_AREA)
    a, b = big[40:136, 10:170].astype(np.float32), big[150:246, 200:360].astype(np.float32)
    fades = [np.clip((1 - t) * a + t * b + 0.5, 0, 255).astype(np.uint8) for t in np.linspace(0.125, 1, 8)]
    frames = [a.astype(np.uint8)] * 3 + fades + [b.astype(np.uint8)] * 2
    stylized = [f.astype(np.float32) / 255 for f in frames]
    smoother, outputs = smooth_clip(path, kind, 0.7, frames, stylized)
    ghost = [255 * float(np.abs(o - s).mean()) for o, s in zip(outputs, stylized)]
    assert smoother.cuts_seen == 0
    assert max(ghost) < 1.05 * 255 * SMOOTH_DRIFT_PER_STRENGTH * 0.7
    assert max(ghost[:3]) < 0.01  # nothing moved, nothing changed: nothing added (float rounding)


def test_budget_threshold_takes_in_the_large_steps_first():
    """The shrink meets the drift budget exactly, leaves less flicker (squared step not taken) than
    scaling every step by one factor to the same drift, is the same on the device, and is 0 within
    the budget."""
    from rtstyle.temporal.host import budget_threshold, drift_stride
    from rtstyle.temporal.smoothers import budget_threshold_tensor

    rng = np.random.default_rng(4)
    step = (rng.laplace(0, 0.03, (96, 160, 3)) * (rng.random((96, 160, 1)) < 0.3)).astype(np.float32)
    budget = 0.005
    threshold = budget_threshold(np.abs(step), budget)
    shrunk = step - np.clip(step, -threshold, threshold)
    assert abs(np.abs(shrunk).mean() - budget) < 1e-6
    scaled = step * (budget / np.abs(step).mean())
    assert np.sum((step - shrunk) ** 2) < 0.8 * np.sum((step - scaled) ** 2)
    device = float(budget_threshold_tensor(torch.from_numpy(np.abs(step)), budget))
    assert device == pytest.approx(threshold, rel=1e-4)
    assert budget_threshold(np.abs(step), 1.0) == 0.0
    assert float(budget_threshold_tensor(torch.from_numpy(np.abs(step)), 1.0)) == 0.0
    # Odd steps (a 4-pixel texture is not aliased), every pixel of small frames, 50k values or more.
    assert [drift_stride(h, w) for h, w in [(96, 160), (180, 320), (480, 640), (1080, 1920)]] == [1, 1, 3, 11]


@pytest.mark.parametrize("path", ["torch", "host"])
def test_batch_flows_made_ahead_give_the_frame_by_frame_result(path, monkeypatch):
    """A flow smoother makes a batch's flows at once before its frame-by-frame blend. Across a cut
    inside a batch, a reset and a size change the output is bit for bit that of one frame at a time,
    and after the first batch no flow is made on demand except where the frame size changed."""
    import cv2

    from rtstyle.temporal import flow
    from rtstyle.temporal.host import make_host_smoother

    frames, _ = cut_clip()  # five frames of a scene, a hard cut, three of a photo
    resized = [cv2.resize(f, (128, 80), interpolation=cv2.INTER_AREA) for f in frames[:3]]
    rng = np.random.default_rng(5)
    stylized = [rng.random((*f.shape[:2], 3), dtype=np.float32) for f in frames + resized]

    def batches(smoother, sizes):
        out, start = [], 0
        for size in sizes:
            chunk = slice(start, start + size)
            images, styled = (frames + resized)[chunk], stylized[chunk]
            if start == 8:
                smoother.reset()  # a new style, say, between batches
            if path == "host":
                out += list(smoother.apply_batch(images, np.stack(styled)))
            else:
                tensors = torch.stack([torch.from_numpy(s).permute(2, 0, 1) for s in styled])
                contents = torch.stack([torch.from_numpy(f).permute(2, 0, 1) / 255.0 for f in images])
                out += [o.permute(1, 2, 0).numpy() for o in smoother.apply_batch(images, contents, tensors)]
            start += size
        return out

    def make():
        return make_host_smoother("flow", 0.7) if path == "host" else make_smoother("flow", 0.7)

    on_demand = []
    original = flow.FlowPair.__call__
    monkeypatch.setattr(flow.FlowPair, "__call__", lambda self, *a: on_demand.append(1) or original(self, *a))
    expected = batches(make(), [1] * 11)
    assert len(on_demand) == 8  # one at a time: every blended frame (not the first, the cut, the new size)
    on_demand.clear()
    got = batches(make(), [2, 4, 2, 3])  # the cut (frame 5) inside the second batch, the new size in the last
    assert len(got) == len(expected) == 11
    for one, other in zip(got, expected):
        np.testing.assert_array_equal(one, other)
    assert len(on_demand) == 1 + 2  # the first batch's second frame, and the resized batch's two blends
