"""Temporal smoothers for the torch-free CPU path: the twins of `smoothers` on numpy and OpenCV.

Frames are float32 (H, W, 3) arrays in 0..1 (NHWC, as ONNX Runtime hands them over on the host), so
OpenCV works on them directly. Each class computes what its torch twin does (same blend, same
thresholds, same flow), so a stream looks the same whichever path stylizes it.

A smoother keeps its state in buffers of its own: the caller may reuse or modify the arrays it
passes in and gets back (ONNX Runtime output buffers, in-place conversion to uint8) without
corrupting the next blend. Buffers are made on the first frame and on a size change, not per frame.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np

from ..config import (
    FLOW_WEIGHT_PER_STRENGTH,
    MAX_SMOOTH_STRENGTH,
    SMOOTH_DRIFT_PER_STRENGTH,
    SMOOTHERS,
    check_smooth_strength,
)
from ..errors import InputError
from .cuts import CutDetector
from .flow import BatchFlows, FlowPair, valid_mask_warped


class HostSmoother(ABC):
    """Blend each stylized frame with the previous output. `strength` sets the drift budget and the
    most weight the past gets (more for the flow smoother: `config.FLOW_WEIGHT_PER_STRENGTH`)."""

    #: True only where the smoother returns its input unchanged, so callers can skip it.
    passthrough = False

    def __init__(self, strength: float, cuts: bool = True, drift_cap: bool = True):
        self.strength = check_smooth_strength(strength)
        self.previous: np.ndarray | None = None
        # The most a frame may move from its own stylization (mean |output - stylized|): strength
        # means the same drift in every style (config.SMOOTH_DRIFT_PER_STRENGTH).
        self.drift_budget = SMOOTH_DRIFT_PER_STRENGTH * self.strength if drift_cap else None
        # A scene cut restarts the blend: the first frame of a shot is its own stylization.
        self.cuts = CutDetector() if cuts else None
        self.cuts_seen = 0

    def reset(self) -> None:
        """Forget the past (a cut, a new style)."""
        self.previous = None
        if self.cuts is not None:
            self.cuts.reset()

    def __call__(self, content: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        """`content`: the input frame (H, W, 3) uint8; `stylized`: its stylization (H, W, 3) float32.

        Returns a new (H, W, 3) float32 array; the first frame, or one of a new size, passes
        through unchanged and starts the state.
        """
        # np.empty, not empty_like: a view's layout (a transposed output) would reach OpenCV, which refuses it.
        return self._step(content, stylized, np.empty(stylized.shape, stylized.dtype))

    def apply_batch(self, images: list[np.ndarray], outputs: np.ndarray) -> np.ndarray:
        """A stylized batch (N, H, W, 3), smoothed frame by frame in order, into one new array."""
        result = np.empty(outputs.shape, outputs.dtype)
        for image, stylized, out in zip(images, outputs, result):
            self._step(image, stylized, out)
        return result

    def _step(self, content: np.ndarray, stylized: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self.cuts is not None and self.cuts(content):
            self.previous = None
            self.cuts_seen += 1
        if self.previous is None or self.previous.shape != stylized.shape:
            np.copyto(out, stylized)
            self._start(content, stylized)
            self.previous = out.copy()
        else:
            self._blend(content, stylized, out)
            np.copyto(self.previous, out)
        return out

    def _start(self, content: np.ndarray, stylized: np.ndarray) -> None:
        """Remember what the next blend needs from the first frame (nothing, by default)."""
        return None

    @abstractmethod
    def _blend(self, content: np.ndarray, stylized: np.ndarray, out: np.ndarray) -> None:
        """Write the smoothed frame into `out`; `self.previous` is the last output."""

    def _lerp(self, start: np.ndarray, end: np.ndarray, weight: float | np.ndarray, out: np.ndarray) -> np.ndarray:
        """start + weight * (end - start) into `out`, the step shrunk to the drift budget
        (`budget_threshold`) where the frame would move further from `start` on average."""
        np.subtract(end, start, out=out)
        out *= weight
        if self.drift_budget is not None:
            stride = drift_stride(*out.shape[:2])
            threshold = budget_threshold(np.abs(out[::stride, ::stride]), self.drift_budget)
            if threshold > 0:
                out -= np.clip(out, -threshold, threshold)
        out += start
        return out


#: Newton steps that find the shrink threshold: exact for the sample within a few on real frames.
BUDGET_STEPS = 8


def budget_threshold(sample: np.ndarray, budget: float) -> float:
    """The amount t by which to shrink every |step| (soft thresholding: step - clip(step, -t, t)) so
    that the mean of the sample's |step| comes down to `budget`; 0 when it is already within it.

    Of all the ways to move a frame no further than the budget on average (drift, an L1 norm), this
    one leaves the least flicker (the squared step not taken): it takes in the large differences
    first, where flicker is, and leaves each pixel at most t of its own. Scaling every step down by
    one factor instead left 0.46 of the per-frame warp error against 0.35 on the busiest style at
    the same drift (benchmarks/temporal_ablation.py). mean(max(sample - t, 0)) is convex and falls
    in t, so Newton's method from t = 0 climbs to the root without overshooting.
    """
    values = sample.ravel()
    if values.size == 0 or values.mean() <= budget:
        return 0.0
    threshold = 0.0
    for _ in range(BUDGET_STEPS):
        above = values > threshold
        count = int(np.count_nonzero(above))
        if count == 0:
            break
        excess = (float(values[above].sum()) - threshold * count) / values.size - budget
        if excess <= 1e-7:
            break
        threshold += excess * values.size / count
    return threshold


class HostNoSmoothing(HostSmoother):
    passthrough = True

    def __call__(self, content: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        return stylized

    def apply_batch(self, images: list[np.ndarray], outputs: np.ndarray) -> np.ndarray:
        return outputs

    def _blend(self, content: np.ndarray, stylized: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, stylized)


class HostEma(HostSmoother):
    """A fixed blend with the previous output."""

    def _blend(self, content: np.ndarray, stylized: np.ndarray, out: np.ndarray) -> None:
        self._lerp(stylized, self.previous, self.strength, out)


class HostAdaptive(HostSmoother):
    """Blend weight strength * exp(-change / scale), change = blurred per-pixel input difference."""

    def __init__(self, strength: float, scale: float = 0.03, cuts: bool = True, drift_cap: bool = True):
        super().__init__(strength, cuts, drift_cap)
        self.scale = scale
        self._last_input: np.ndarray | None = None
        self._diff: np.ndarray | None = None
        self._change: np.ndarray | None = None
        self._weight: np.ndarray | None = None

    def _start(self, content: np.ndarray, stylized: np.ndarray) -> None:
        self._last_input = content.copy()
        self._diff = np.empty(content.shape, content.dtype)
        self._change = np.empty(content.shape[:2], np.float32)
        self._weight = np.empty_like(self._change)

    def _blend(self, content: np.ndarray, stylized: np.ndarray, out: np.ndarray) -> None:
        # |a - b| in uint8 is exact, so the channel mean in 0..1 is one sum and one scale. The sum is
        # written out: numpy's reduction over a 3-long last axis is ten times slower.
        diff, change = cv2.absdiff(content, self._last_input, dst=self._diff), self._change
        np.add(diff[..., 0], diff[..., 1], out=change, dtype=np.float32)
        change += diff[..., 2]
        change *= 1.0 / (3 * 255)
        # F.avg_pool2d(x, 7, stride=1, padding=3) counts the zero padding: a normalized box filter
        # over a zero border divides by 49 everywhere too.
        cv2.boxFilter(change, -1, (7, 7), dst=self._weight, normalize=True, borderType=cv2.BORDER_CONSTANT)
        np.copyto(self._last_input, content)
        weight = self._weight
        weight *= -1.0 / self.scale
        np.exp(weight, out=weight)
        weight *= self.strength
        self._lerp(stylized, self.previous, weight[..., None], out)


#: A frame's drift is estimated on every n-th pixel each way, n odd and as large as leaves at least
#: DRIFT_SAMPLE values (all pixels of small frames; every 3rd at 640x480, every 11th at 1920x1080).
#: Odd: the networks' two 2x upsamplings leave texture with a period of 4 pixels, which a grid of
#: every 4th pixel aliases (it read 10 % low on some styles, and clips drifted to 0.031 past a 0.029
#: budget). Enough values: after the shrink (`budget_threshold`) the drift lives in the largest
#: steps, a small share of the pixels, which a thin sample estimates poorly.
DRIFT_SAMPLE = 50_000


def drift_stride(height: int, width: int, channels: int = 3) -> int:
    """The sampling step for a frame's drift (see DRIFT_SAMPLE)."""
    stride = max(1, int((height * width * channels / DRIFT_SAMPLE) ** 0.5))
    return stride if stride % 2 else max(1, stride - 1)


#: DIS preset of the flow smoother. "fine" ("fast" down to the finest scale 1) at half the frame's
#: size: with "fast" as it is, the warp error left rises from 0.17 to 0.23 of per-frame at the same
#: drift (16 styles x 5 clips, benchmarks/temporal_ablation.py). It costs 6.7 ms a flow at 320x240
#: on 2 CPU cores against 3.9 ("medium": 15 ms).
FLOW_PRESET = "fine"


class HostFlow(HostSmoother):
    """Warp the previous output along the input's optical flow, blend where the flow holds.

    The flow and its confidence are computed at `flow_side(height, width)` of the frame (or the `flow_side` given):
    confidence is the forward-backward check (occlusions, disocclusions, motion boundaries) or, where
    it fails, a close match of the warped input all around (`MATCH_LOW`), times the input's own
    brightness constancy (the gray input of t-1 warped onto t must match t: where it
    does not, the flow is wrong or the content changed, so the past is a ghost), times "the pixel came
    from inside the frame". It is scaled up to the frame with the flow.
    """

    def __init__(self, strength: float, flow_side: int | None = None, cuts: bool = True,
                 brightness: bool = True, preset: str = FLOW_PRESET, drift_cap: bool = True):
        super().__init__(strength, cuts, drift_cap)
        # The most weight the past gets (the drift budget stays the strength's).
        self.weight = min(MAX_SMOOTH_STRENGTH, FLOW_WEIGHT_PER_STRENGTH * self.strength)
        self.flow_side = flow_side
        self.brightness = brightness
        self._flows = BatchFlows(FlowPair(preset))
        self._small: tuple[int, int] | None = None
        self._shape: tuple[int, int] | None = None
        self._last_small: np.ndarray | None = None
        self._small_grid: np.ndarray | None = None
        self._grid: np.ndarray | None = None
        self._maps: np.ndarray | None = None
        self._moved: np.ndarray | None = None

    def _start(self, content: np.ndarray, stylized: np.ndarray) -> None:
        height, width = content.shape[:2]
        side = self.flow_side or flow_side(height, width)
        self._small = small_size(height, width, side)
        self._shape = (height, width)
        self._last_small = self._flows.gray(content, self._gray_small)
        self._small_grid = identity_grid(self._small[1], self._small[0])
        self._grid = identity_grid(height, width)
        self._maps = np.empty_like(self._grid)
        self._moved = np.empty(stylized.shape, stylized.dtype)

    def _gray_small(self, content: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(content, cv2.COLOR_RGB2GRAY)
        if gray.shape[::-1] != self._small:
            gray = cv2.resize(gray, self._small, interpolation=cv2.INTER_AREA)
        return gray

    def apply_batch(self, images: list[np.ndarray], outputs: np.ndarray) -> np.ndarray:
        """`HostSmoother.apply_batch`, the batch's flows made at once first (`flow.BatchFlows`)."""
        with self._flows.ahead(images, self._shape, self._gray_small, self._last_small):
            return super().apply_batch(images, outputs)

    def _blend(self, content: np.ndarray, stylized: np.ndarray, out: np.ndarray) -> None:
        gray, backward, forward = self._flows.pair(content, self._gray_small, self._last_small)
        confidence = flow_confidence(gray, self._last_small, backward, forward, self._small_grid, self.brightness)
        self._last_small = gray
        height, width = content.shape[:2]
        if (width, height) != self._small:
            scale = np.float32(width / self._small[0]), np.float32(height / self._small[1])
            confidence = cv2.resize(confidence, (width, height), interpolation=cv2.INTER_LINEAR)
            backward = cv2.resize(backward, (width, height), interpolation=cv2.INTER_LINEAR)
            backward[..., 0] *= scale[0]
            backward[..., 1] *= scale[1]
        np.add(self._grid, backward, out=self._maps)
        confidence *= self.weight
        self._lerp(stylized, remap(self.previous, self._maps, self._moved), confidence[..., None], out)


#: The longest side the smoother's flow runs at (a 1920x1080 frame's flow: 960x540).
FLOW_SIDE_MAX = 960


def flow_side(height: int, width: int) -> int:
    """Long side of the flow estimate for a frame: half the frame's up to 768 px, all but 384 px of
    it above that, at least 256 and at most `FLOW_SIDE_MAX` (640 for 1024x436, 896 for 1280x720).

    DIS's cost follows the pixel count, and at live sizes a smoother needs only the motion of regions
    a few pixels wide: at 640x480 the flow runs on 320x240, a quarter of the pixels. Larger frames
    need more: on Sintel's 1024x436 pair with ground-truth flow, the flicker left by flow at 480 px
    was over 0.3 of per-frame in 3 of 52 styles, at 640 px in none (mean 0.237 -> 0.203), for 1.2-1.5
    times the smoother's time; scaled up to 1920 px, 480 px left 0.42 on average, 960 px 0.24
    (benchmarks/temporal_truth.py with the styles as shipped, docs/smoothing.md "Flow size").
    """
    long = max(height, width)
    return min(long, FLOW_SIDE_MAX, max(256, long // 2, long - 384))


def small_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(width, height) of the flow estimate with long side `side` (the frame's own when smaller)."""
    scale = min(1.0, side / max(height, width))
    return max(8, round(width * scale)), max(8, round(height * scale))


#: Brightness constancy: a gray difference (0..255) after warping up to LOW is trusted fully,
#: from HIGH on not at all, linearly between. Sensor noise and compression sit well below LOW;
#: a wrong flow or new content moves gray levels by tens.
BRIGHTNESS_LOW, BRIGHTNESS_HIGH = 16.0, 48.0

#: Where the forward-backward check fails but the warped input matches this frame closely all
#: around (mean gray difference over MATCH_WINDOW x MATCH_WINDOW up to MATCH_LOW: full trust, none
#: from MATCH_HIGH), the flow is still right for the picture: DIS's two flows disagree in flat or
#: repetitive areas and on thin moving parts whose warp is nonetheless exact. Without trusting those,
#: the warp error left rises from 0.17 to 0.21 of per-frame at the same drift (16 styles x 5 clips,
#: benchmarks/temporal_ablation.py). New content or a wrong flow never matches: it stays rejected.
MATCH_LOW, MATCH_HIGH, MATCH_WINDOW = 4.0, 10.0, 5


def flow_confidence(gray: np.ndarray, last_gray: np.ndarray, backward: np.ndarray, forward: np.ndarray,
                    grid: np.ndarray, brightness: bool = True) -> np.ndarray:
    """(h, w) float32 0..1: how far to trust the backward flow at each pixel of `gray` (frame t).

    Forward-backward check and motion boundaries (Ruder et al. 2016), or where they fail, a close
    match of the warped input all around (`MATCH_LOW`); then inside-the-frame and the input's own
    brightness constancy after warping. All at the flow's resolution.
    """
    maps = grid + backward
    confidence = valid_mask_warped(backward, remap(forward, maps))
    height, width = gray.shape
    if brightness:
        moved = remap(last_gray.astype(np.float32), maps)
        error = cv2.absdiff(gray.astype(np.float32), moved)
        local = cv2.blur(error, (MATCH_WINDOW, MATCH_WINDOW))
        np.maximum(confidence, ramp_down(local, MATCH_LOW, MATCH_HIGH), out=confidence)
        confidence *= ramp_down(error, BRIGHTNESS_LOW, BRIGHTNESS_HIGH)
    inside = (maps[..., 0] >= 0) & (maps[..., 0] <= width - 1) & (maps[..., 1] >= 0) & (maps[..., 1] <= height - 1)
    confidence *= inside
    return confidence


def ramp_down(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """1 up to `low`, 0 from `high`, linear between."""
    return np.clip((high - values) * (1.0 / (high - low)), 0.0, 1.0)


def identity_grid(height: int, width: int) -> np.ndarray:
    """(H, W, 2) float32 pixel coordinates (x, y): made once per stream, not per frame as `flow.warp` does."""
    grid = np.empty((height, width, 2), np.float32)
    grid[..., 0] = np.arange(width, dtype=np.float32)
    grid[..., 1] = np.arange(height, dtype=np.float32)[:, None]
    return grid


def remap(image: np.ndarray, maps: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
    """`image` sampled at `maps` (H, W, 2: grid + flow), exactly as `flow.warp` samples it.

    One two-channel map made once per frame: 2.5 times faster than `flow.warp` at 640x360.
    """
    return cv2.remap(image, maps, None, interpolation=cv2.INTER_LINEAR, dst=dst, borderMode=cv2.BORDER_REPLICATE)


def make_host_smoother(kind: str, strength: float, cuts: bool = True, drift_cap: bool = True) -> HostSmoother:
    """The host twin of `smoothers.make_smoother`: same kinds, same errors. `cuts`: reset at scene cuts;
    `drift_cap`: hold the mean drift from the stylization to `SMOOTH_DRIFT_PER_STRENGTH` x strength."""
    kinds = {"none": HostNoSmoothing, "ema": HostEma, "adaptive": HostAdaptive, "flow": HostFlow}
    if kind not in kinds:
        raise InputError(f"unknown smoother {kind!r}; use one of {', '.join(SMOOTHERS)}")
    return kinds[kind](strength, cuts=cuts, drift_cap=drift_cap)
