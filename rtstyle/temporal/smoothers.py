"""Temporal smoothers: blend each stylized frame with the previous output to stop flicker.

All work on float tensors (3, H, W) in 0..1 on the engine's device, frame by frame in order;
`strength` (0..1) is the most weight the previous output can get.

* ``ema``: a fixed blend. Cheap, but moving objects leave ghosts.
* ``adaptive``: the blend weight falls where the *input* changed, so static areas are steady
  and moving ones follow the new frame.
* ``flow``: the previous output is first moved along the optical flow of the inputs (DIS on a
  downscaled copy), then blended where the flow is trustworthy (forward-backward check).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SMOOTHERS
from ..errors import InputError
from .flow import FlowEstimator, to_gray, valid_mask


class Smoother(ABC):
    def __init__(self, strength: float):
        if not 0.0 <= strength <= 0.95:
            raise InputError(f"smoothing strength must be between 0 and 0.95, got {strength:g}")
        self.strength = strength
        self.previous: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the past (a cut, a new style)."""
        self.previous = None

    def __call__(self, content: np.ndarray, stylized: torch.Tensor) -> torch.Tensor:
        """`content`: the input frame (H x W x 3 uint8); `stylized`: its stylization (3, H, W)."""
        if self.previous is None or self.previous.shape != stylized.shape:
            out = stylized
            self._start(content, stylized)
        else:
            out = self._blend(content, stylized)
        self.previous = out
        return out

    def _start(self, content: np.ndarray, stylized: torch.Tensor) -> None:
        """Remember what the next blend needs from the first frame (nothing, by default)."""
        return None

    @abstractmethod
    def _blend(self, content: np.ndarray, stylized: torch.Tensor) -> torch.Tensor: ...


class NoSmoothing(Smoother):
    def __call__(self, content: np.ndarray, stylized: torch.Tensor) -> torch.Tensor:
        return stylized

    def _blend(self, content: np.ndarray, stylized: torch.Tensor) -> torch.Tensor:
        return stylized


class EmaSmoother(Smoother):
    def _blend(self, content: np.ndarray, stylized: torch.Tensor) -> torch.Tensor:
        return torch.lerp(stylized, self.previous, self.strength)


class AdaptiveSmoother(Smoother):
    """Blend weight strength * exp(-change / scale), change = blurred per-pixel input difference."""

    def __init__(self, strength: float, scale: float = 0.03):
        super().__init__(strength)
        self.scale = scale
        self._last_input: torch.Tensor | None = None

    def _input(self, content: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(content).to(device).permute(2, 0, 1).to(dtype).div_(255.0)

    def _start(self, content: np.ndarray, stylized: torch.Tensor) -> None:
        self._last_input = self._input(content, stylized.device, stylized.dtype)

    def _blend(self, content: np.ndarray, stylized: torch.Tensor) -> torch.Tensor:
        current = self._input(content, stylized.device, stylized.dtype)
        change = (current - self._last_input).abs().mean(0, keepdim=True)[None]
        change = F.avg_pool2d(change, 7, stride=1, padding=3)[0]
        self._last_input = current
        weight = self.strength * torch.exp(-change / self.scale)
        return torch.lerp(stylized, self.previous, weight)


class FlowSmoother(Smoother):
    """Warp the previous output along the input's optical flow, blend where the flow holds."""

    def __init__(self, strength: float, flow_max_side: int = 480):
        super().__init__(strength)
        self.flow = FlowEstimator("ultrafast", flow_max_side)
        self._last_gray: np.ndarray | None = None

    def _start(self, content: np.ndarray, stylized: torch.Tensor) -> None:
        self._last_gray = to_gray(content)

    def _blend(self, content: np.ndarray, stylized: torch.Tensor) -> torch.Tensor:
        gray = to_gray(content)
        backward = self.flow(gray, self._last_gray)
        forward = self.flow(self._last_gray, gray)
        mask = valid_mask(backward, forward)
        self._last_gray = gray
        moved = warp_tensor(self.previous, torch.from_numpy(backward).to(stylized.device))
        weight = self.strength * torch.from_numpy(mask).to(stylized.device, stylized.dtype)
        return torch.lerp(stylized, moved, weight)


def warp_tensor(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`image` (C, H, W) sampled at x + flow(x), on the image's device (bilinear, border clamp)."""
    _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, device=image.device, dtype=torch.float32),
                            torch.arange(width, device=image.device, dtype=torch.float32), indexing="ij")
    grid_x = (xs + flow[..., 0]) * (2.0 / max(width - 1, 1)) - 1.0
    grid_y = (ys + flow[..., 1]) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([grid_x, grid_y], dim=-1)[None].to(image.dtype)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def make_smoother(kind: str, strength: float) -> Smoother:
    kinds = {"none": NoSmoothing, "ema": EmaSmoother, "adaptive": AdaptiveSmoother, "flow": FlowSmoother}
    if kind not in kinds:
        raise InputError(f"unknown smoother {kind!r}; use one of {', '.join(SMOOTHERS)}")
    return kinds[kind](strength)
