"""Temporal smoothers: blend each stylized frame with the previous output to stop flicker.

All work on float tensors (3, H, W) in 0..1 on the engine's device, frame by frame in order;
`strength` (0..0.95) sets the drift budget (`config.SMOOTH_DRIFT_PER_STRENGTH`) and the most weight
the previous output can get (1.25 times that for ``flow``: `config.FLOW_WEIGHT_PER_STRENGTH`).

* ``ema``: a fixed blend. Cheap, but moving objects leave ghosts.
* ``adaptive``: the blend weight falls where the *input* changed, so static areas are steady
  and moving ones follow the new frame.
* ``flow``: the previous output is first moved along the optical flow of the inputs (DIS on a
  downscaled copy), then blended as far as the flow is trusted (forward-backward check,
  brightness constancy of the input, inside the frame). Only the flow estimation runs on the
  host; the low-resolution flows and gray frames go to the device, where the confidence, the
  scaling up, the warp and the blend are computed.

Every smoother restarts at a scene cut (`cuts.CutDetector`, on the host frame), so the first
frame of a shot is its own stylization and no ghost of the last shot is blended into it.

A smoother belongs to one stream (the runner makes one per stream), not to a stylizer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..config import (
    FLOW_WEIGHT_PER_STRENGTH,
    MAX_SMOOTH_STRENGTH,
    SMOOTH_DRIFT_PER_STRENGTH,
    SMOOTHERS,
    check_smooth_strength,
)
from ..errors import InputError
from .cuts import CutDetector
from .flow import BatchFlows, FlowPair, to_gray
from .host import (
    BRIGHTNESS_HIGH,
    BRIGHTNESS_LOW,
    BUDGET_STEPS,
    FLOW_PRESET,
    MATCH_HIGH,
    MATCH_LOW,
    MATCH_WINDOW,
    drift_stride,
    flow_side,
    small_size,
)


class Smoother(ABC):
    passthrough = False  # True where apply_batch changes nothing, so callers can skip it

    def __init__(self, strength: float, cuts: bool = True, drift_cap: bool = True):
        self.strength = check_smooth_strength(strength)
        self.previous: torch.Tensor | None = None
        # The most a frame may move from its own stylization (config.SMOOTH_DRIFT_PER_STRENGTH).
        self.drift_budget = SMOOTH_DRIFT_PER_STRENGTH * self.strength if drift_cap else None
        # A scene cut restarts the blend: the first frame of a shot is its own stylization. The
        # detector works on the host frame, which every caller has.
        self.cuts = CutDetector() if cuts else None
        self.cuts_seen = 0

    def reset(self) -> None:
        """Forget the past (a cut, a new style)."""
        self.previous = None
        if self.cuts is not None:
            self.cuts.reset()

    def __call__(self, content: np.ndarray, stylized: torch.Tensor, content_on_device: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """`content`: the input frame (H x W x 3 uint8); `stylized`: its stylization (3, H, W).

        `content_on_device`: the same frame as (3, H, W) in 0..1 where it already lives beside
        `stylized` (the pipeline has it), so smoothers that need it do not upload it again.
        """
        if content_on_device is None:
            content_on_device = torch.from_numpy(content).to(stylized.device).permute(2, 0, 1).div(255.0)
        content_on_device = content_on_device.to(stylized.dtype)
        if self.cuts is not None and self.cuts(content):
            self.previous = None
            self.cuts_seen += 1
        if self.previous is None or self.previous.shape != stylized.shape:
            out = stylized
            self._start(content, content_on_device, stylized)
        else:
            out = self._blend(content, content_on_device, stylized)
        self.previous = out
        return out

    def _start(self, content: np.ndarray, content_on_device: torch.Tensor, stylized: torch.Tensor) -> None:
        """Remember what the next blend needs from the first frame (nothing, by default)."""
        return None

    @abstractmethod
    def _blend(self, content: np.ndarray, content_on_device: torch.Tensor, stylized: torch.Tensor
               ) -> torch.Tensor: ...

    def _lerp(self, start: torch.Tensor, end: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
        """`host.HostSmoother._lerp` on the device: the step toward `end`, shrunk to the drift budget.
        The threshold stays a tensor, so nothing waits for the device."""
        step = (end - start) * weight
        if self.drift_budget is None:
            return start + step
        stride = drift_stride(*step.shape[-2:])
        threshold = budget_threshold_tensor(step[:, ::stride, ::stride].abs(), self.drift_budget)
        return start + (step - torch.minimum(torch.maximum(step, -threshold), threshold))

    def apply_batch(self, images: list[np.ndarray], inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """A stylized batch (N, 3, H, W), smoothed frame by frame in order (a `frames.DeviceStep`)."""
        return torch.stack([self(image, out, content) for image, out, content in zip(images, outputs, inputs)])


class NoSmoothing(Smoother):
    passthrough = True
    def __call__(self, content: np.ndarray, stylized: torch.Tensor, content_on_device: torch.Tensor | None = None
                 ) -> torch.Tensor:
        return stylized

    def _blend(self, content: np.ndarray, content_on_device: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor:
        return stylized

    def apply_batch(self, images: list[np.ndarray], inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return outputs


class EmaSmoother(Smoother):
    def _blend(self, content: np.ndarray, content_on_device: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor:
        return self._lerp(stylized, self.previous, float(self.strength))


class AdaptiveSmoother(Smoother):
    """Blend weight strength * exp(-change / scale), change = blurred per-pixel input difference."""

    def __init__(self, strength: float, scale: float = 0.03, cuts: bool = True, drift_cap: bool = True):
        super().__init__(strength, cuts, drift_cap)
        self.scale = scale
        self._last_input: torch.Tensor | None = None

    def _start(self, content: np.ndarray, content_on_device: torch.Tensor, stylized: torch.Tensor) -> None:
        self._last_input = content_on_device

    def _blend(self, content: np.ndarray, content_on_device: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor:
        change = (content_on_device - self._last_input).abs().mean(0, keepdim=True)[None]
        change = F.avg_pool2d(change, 7, stride=1, padding=3)[0]
        self._last_input = content_on_device
        weight = self.strength * torch.exp(-change / self.scale)
        return self._lerp(stylized, self.previous, weight)


class FlowSmoother(Smoother):
    """Warp the previous output along the input's optical flow, blend as far as the flow is trusted.

    The twin of `host.HostFlow`: the same flow (DIS on the host, at `host.flow_side` of the frame)
    and the same confidence (forward-backward check, inside-the-frame, the input's brightness
    constancy), computed here on the device at the flow's resolution and scaled up with the flow.
    Only the two small gray frames and the two small flows cross to the device.
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
        self._last_small_device: torch.Tensor | None = None
        self._small_grid: torch.Tensor | None = None
        self._grid: torch.Tensor | None = None

    def _start(self, content: np.ndarray, content_on_device: torch.Tensor, stylized: torch.Tensor) -> None:
        height, width = stylized.shape[-2:]
        self._small = small_size(height, width, self.flow_side or flow_side(height, width))
        self._shape = content.shape[:2]  # the host frames' (the batch's flows are made from them)
        self._last_small = self._flows.gray(content, self._gray_small)
        self._last_small_device = self._upload(self._last_small, stylized.device)
        self._small_grid = identity_grid(self._small[1], self._small[0], stylized.device)
        self._grid = identity_grid(height, width, stylized.device)

    def _gray_small(self, content: np.ndarray) -> np.ndarray:
        gray = to_gray(content)
        if gray.shape[::-1] != self._small:
            gray = cv2.resize(gray, self._small, interpolation=cv2.INTER_AREA)
        return gray

    @staticmethod
    def _upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(array).to(device, non_blocking=True)

    def apply_batch(self, images: list[np.ndarray], inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """`Smoother.apply_batch`, the batch's flows made at once first (`flow.BatchFlows`): on the host,
        while the device still works on the batch."""
        with self._flows.ahead(images, self._shape, self._gray_small, self._last_small):
            return super().apply_batch(images, inputs, outputs)

    def _blend(self, content: np.ndarray, content_on_device: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor:
        gray, backward, forward = self._flows.pair(content, self._gray_small, self._last_small)
        backward, forward = self._upload(backward, stylized.device), self._upload(forward, stylized.device)
        gray_device = self._upload(gray, stylized.device)
        confidence = flow_confidence_tensor(gray_device, self._last_small_device, backward, forward,
                                            self._small_grid, self.brightness)
        self._last_small, self._last_small_device = gray, gray_device
        height, width = stylized.shape[-2:]
        if (width, height) != self._small:
            # Bilinear with half-pixel centres, as cv2.resize does on the host path.
            confidence = F.interpolate(confidence[None], size=(height, width), mode="bilinear",
                                       align_corners=False)[0]
            full = F.interpolate(backward.permute(2, 0, 1)[None], size=(height, width), mode="bilinear",
                                 align_corners=False)[0].permute(1, 2, 0)
            # Python-number scales: a scale tensor built here would be a host-to-device copy every frame.
            backward = torch.stack([full[..., 0] * (width / self._small[0]), full[..., 1] * (height / self._small[1])],
                                   dim=-1)
        moved = warp_tensor(self.previous, backward, self._grid)
        return self._lerp(stylized, moved, (self.weight * confidence).to(stylized.dtype))


def budget_threshold_tensor(sample: torch.Tensor, budget: float) -> torch.Tensor:
    """`host.budget_threshold` on the device, as a 0-d tensor: the same Newton steps, all taken (a
    step past the root changes nothing), so no value comes back to the host."""
    values = sample.reshape(-1).to(torch.float32)
    threshold = torch.zeros((), dtype=torch.float32, device=values.device)
    if values.numel() == 0:
        return threshold
    for _ in range(BUDGET_STEPS):
        above = values > threshold
        count = above.sum()
        excess = (torch.where(above, values, 0.0).sum() - threshold * count) / values.numel() - budget
        threshold = threshold + torch.where((excess > 0) & (count > 0), excess * values.numel() / count.clamp_min(1),
                                            0.0)
    return threshold.to(sample.dtype)


def flow_confidence_tensor(gray: torch.Tensor, last_gray: torch.Tensor, backward: torch.Tensor,
                           forward: torch.Tensor, grid: torch.Tensor, brightness: bool = True) -> torch.Tensor:
    """`host.flow_confidence` on tensors: (1, h, w) float32 0..1. `gray`, `last_gray`: (h, w) uint8."""
    confidence = valid_mask_tensor(backward, forward, grid)
    height, width = gray.shape
    if brightness:
        moved = warp_tensor(last_gray.to(torch.float32)[None], backward, grid)
        error = (gray.to(torch.float32)[None] - moved).abs()
        # cv2.blur's border is BORDER_REFLECT_101, torch's "reflect" padding.
        half = MATCH_WINDOW // 2
        local = F.avg_pool2d(F.pad(error[None], (half, half, half, half), mode="reflect"), MATCH_WINDOW, stride=1)[0]
        confidence = torch.maximum(confidence, ramp_down_tensor(local, MATCH_LOW, MATCH_HIGH))
        confidence = confidence * ramp_down_tensor(error, BRIGHTNESS_LOW, BRIGHTNESS_HIGH)
    moved_at = grid + backward
    inside = ((moved_at[..., 0] >= 0) & (moved_at[..., 0] <= width - 1) & (moved_at[..., 1] >= 0)
              & (moved_at[..., 1] <= height - 1))
    return confidence * inside


def ramp_down_tensor(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """`host.ramp_down`: 1 up to `low`, 0 from `high`, linear between."""
    return ((high - values) * (1.0 / (high - low))).clamp(0, 1)


def valid_mask_tensor(backward: torch.Tensor, forward: torch.Tensor, grid: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """`flow.valid_mask` on tensors: (1, H, W) float32, 1 where the backward flow is trustworthy.

    `backward` (t -> t-1) and `forward` (t-1 -> t) are (H, W, 2) float32 in pixels. Same thresholds
    (Ruder et al. 2016) and the same arithmetic as the host version, so either can check the other.
    """
    forward_at_target = warp_tensor(forward.permute(2, 0, 1), backward, grid).permute(1, 2, 0)
    mismatch = ((forward_at_target + backward) ** 2).sum(-1)
    occluded = mismatch > 0.01 * ((forward_at_target**2).sum(-1) + (backward**2).sum(-1)) + 0.5
    du_y, du_x = torch.gradient(backward[..., 0])
    dv_y, dv_x = torch.gradient(backward[..., 1])
    boundary = du_x**2 + du_y**2 + dv_x**2 + dv_y**2 > 0.01 * (backward**2).sum(-1) + 0.002
    return (~occluded & ~boundary).to(torch.float32)[None]


def identity_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """(H, W, 2) pixel coordinates (x, y) of every pixel; made once per stream, not per frame."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                            torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys], dim=-1)


def warp_tensor(image: torch.Tensor, flow: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
    """`image` (C, H, W) sampled at x + flow(x), on the image's device (bilinear, border clamp).

    `grid`: `identity_grid` of the image's size, if the caller keeps one.
    """
    _, height, width = image.shape
    if grid is None:
        grid = identity_grid(height, width, image.device)
    # Python-number scales: a scale tensor built here would be a host-to-device copy every frame.
    moved = grid + flow
    sample_at = torch.stack([moved[..., 0] * (2.0 / max(width - 1, 1)) - 1.0,
                             moved[..., 1] * (2.0 / max(height - 1, 1)) - 1.0], dim=-1)[None].to(image.dtype)
    return F.grid_sample(image[None], sample_at, mode="bilinear", padding_mode="border", align_corners=True)[0]


def make_smoother(kind: str, strength: float, cuts: bool = True, drift_cap: bool = True) -> Smoother:
    """A smoother of `kind`; `cuts`: reset at scene cuts (`cuts.CutDetector`); `drift_cap`: hold the
    mean drift from the stylization to `config.SMOOTH_DRIFT_PER_STRENGTH` x strength."""
    kinds = {"none": NoSmoothing, "ema": EmaSmoother, "adaptive": AdaptiveSmoother, "flow": FlowSmoother}
    if kind not in kinds:
        raise InputError(f"unknown smoother {kind!r}; use one of {', '.join(SMOOTHERS)}")
    return kinds[kind](strength, cuts=cuts, drift_cap=drift_cap)
