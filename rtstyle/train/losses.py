"""Perceptual losses (Johnson et al. 2016) on a frozen VGG: content, multi-layer/multi-scale Gram
style, total variation, and an optional style-contrastive term.

Gram matrices and losses are computed in float32 whatever the autocast dtype: Gram entries
overflow fp16's 65504 easily (neural-style-pt#97).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import PerceptualWeights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Indices of the ReLU outputs used, in torchvision's `features` numbering.
VGG_LAYERS = {
    "vgg16": {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22},
    "vgg19": {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26},
}


class FeatureNet(nn.Module):
    """Runs a VGG-style `features` stack and returns the activations at `layers` (name -> index)."""

    def __init__(self, features: nn.Sequential, layers: dict[str, int]):
        super().__init__()
        last = max(layers.values())
        self.features = features[: last + 1].eval().requires_grad_(False)
        self.layers = layers
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        wanted = {index: name for name, index in self.layers.items()}
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


def load_vgg(arch: str = "vgg16", weights: str | Path | None = None) -> FeatureNet:
    """ImageNet VGG from a file the user names, or from torchvision's cache. Never downloads."""
    try:
        import torchvision
    except ImportError:
        raise InputError("perceptual mode needs torchvision: pip install 'rtstyle[train]'") from None

    if arch not in VGG_LAYERS:
        raise InputError(f"unknown loss network {arch!r}; use vgg16 or vgg19")
    net = getattr(torchvision.models, arch)(weights=None)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"VGG weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except Exception as exc:  # torch.load and load_state_dict raise several types
            raise InputError(f"{path} is not a {arch} state dict ({exc.__class__.__name__})") from exc
    else:
        enum = getattr(torchvision.models, f"{arch.upper()}_Weights").IMAGENET1K_V1
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
        if not cached.is_file():
            raise InputError(f"ImageNet {arch} weights are not available offline: put {Path(enum.url).name} "
                             f"from {enum.url} in {cached.parent}, or pass --vgg-weights PATH (or use --mode distill)")
        net.load_state_dict(enum.get_state_dict(progress=False))
    return FeatureNet(net.features, VGG_LAYERS[arch])


def gram(features: torch.Tensor) -> torch.Tensor:
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


class PerceptualLoss(nn.Module):
    """Content + Gram style + TV (+ contrastive) against a fixed set of style images."""

    def __init__(self, net: FeatureNet, style_images: torch.Tensor, weights: PerceptualWeights,
                 content_layer: str | None = None):
        super().__init__()
        self.net = net
        self.weights = weights
        names = list(net.layers)
        self.content_layer = content_layer or names[min(1, len(names) - 1)]
        self.style_layers = names
        with torch.no_grad():
            self.targets = {scale: self._grams(style_images, scale) for scale in self._scales()}
            # Per-image Grams of the style set, for the contrastive term's positives.
            self.style_bank = self._flat_grams(style_images)

    def _scales(self) -> tuple[float, ...]:
        return (1.0, 0.5) if self.weights.multiscale else (1.0,)

    def _grams(self, images: torch.Tensor, scale: float) -> dict[str, torch.Tensor]:
        x = images if scale == 1.0 else F.interpolate(images, scale_factor=scale, mode="bilinear",
                                                      antialias=True, align_corners=False)
        grams: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(x), 8):
            for name, f in self.net(x[start:start + 8]).items():
                grams.setdefault(name, []).append(gram(f))
        return {name: torch.cat(g).mean(0) for name, g in grams.items()}

    def _flat_grams(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.net(images)
        return torch.cat([gram(feats[name]).flatten(1) for name in self.style_layers], dim=1)

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        out_features = self.net(output)
        with torch.no_grad():
            content_features = self.net(content)
        terms = {"content": F.mse_loss(out_features[self.content_layer].float(),
                                       content_features[self.content_layer].float())}
        style = output.new_zeros((), dtype=torch.float32)
        for scale in self._scales():
            features = out_features if scale == 1.0 else self.net(
                F.interpolate(output, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False))
            for name in self.style_layers:
                target = self.targets[scale][name].to(output.device)
                style = style + F.mse_loss(gram(features[name]), target.expand(len(output), -1, -1))
        terms["style"] = style
        terms["tv"] = total_variation(output.float())
        if self.weights.contrastive > 0:
            terms["contrastive"] = self._contrastive(out_features, content_features)
        w = self.weights
        terms["total"] = (w.content * terms["content"] + w.style * terms["style"] + w.tv * terms["tv"]
                          + w.contrastive * terms.get("contrastive", 0.0))
        return terms

    def _contrastive(self, out_features: dict, content_features: dict, temperature: float = 0.1) -> torch.Tensor:
        """InfoNCE on Gram vectors: each output should sit nearer the style set than the contents."""
        out = F.normalize(torch.cat([gram(out_features[n]).flatten(1) for n in self.style_layers], 1), dim=1)
        positives = F.normalize(self.style_bank.to(out.device), dim=1)
        negatives = F.normalize(torch.cat([gram(content_features[n]).flatten(1) for n in self.style_layers], 1),
                                dim=1)
        pos = (out @ positives.T / temperature).logsumexp(1)
        every = torch.cat([out @ positives.T, out @ negatives.T], 1) / temperature
        return (every.logsumexp(1) - pos).mean()


def synthetic_motion(images: torch.Tensor, max_shift: float = 0.03, max_zoom: float = 0.03,
                     max_turn: float = 0.02, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A second frame for each image, moved by a small random similarity transform with known motion.

    Returns the moved images (N, 3, H, W), the sampling grid (N, H, W, 2; where each pixel of the
    second frame was in the first, in grid_sample's -1..1 coordinates: the backward flow) and the
    valid mask (N, 1, H, W; 0 where that point lies outside the first frame, i.e. disoccluded).
    Shift is a fraction of the frame, zoom a relative scale, turn radians (a camera pan, push-in
    and roll between two consecutive frames).
    """
    n = len(images)
    rand = torch.rand(n, 4, generator=generator).to(images.device) * 2 - 1
    scale = 1 + max_zoom * rand[:, 0]
    angle = max_turn * rand[:, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, 2 * max_shift * rand[:, 2]], 1),
                         torch.stack([sin, cos, 2 * max_shift * rand[:, 3]], 1)], 1).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    valid = (grid.abs() <= 1).all(-1, keepdim=True).permute(0, 3, 1, 2).to(images.dtype)
    return moved, grid, valid


def temporal_loss(first: torch.Tensor, second: torch.Tensor, grid: torch.Tensor, valid: torch.Tensor
                  ) -> torch.Tensor:
    """Short-term temporal loss (Ruder et al. 2016; ReCoNet, Gao et al. 2018): the stylized second frame
    against the stylized first warped by the known motion, mean squared difference where it is valid.

    Zero for a network that follows the motion (a static clip gives identical outputs); positive for
    one whose output flickers between the frames.
    """
    warped = F.grid_sample(first.float(), grid.float(), mode="bilinear", padding_mode="border",
                           align_corners=False)
    squared = (second.float() - warped).square() * valid
    return squared.sum() / (valid.sum() * first.shape[1]).clamp_min(1.0)


def face_structure_loss(output: torch.Tensor, inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The face term: inside the faces' masks (B x H x W, 0..1), the output's grey-level gradients follow the
    photo's, so eyes, brows and mouth keep their shape (and the face its expression) whatever colours the
    style paints them in. A batch without faces adds nothing (0, with a gradient graph)."""

    def grey(x: torch.Tensor) -> torch.Tensor:
        return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]

    out, ref, masks = grey(output.float()), grey(inputs.float()), masks.float()
    loss = output.sum() * 0.0
    for axis in (-1, -2):
        weight = torch.minimum(masks.narrow(axis, 1, masks.shape[axis] - 1),
                               masks.narrow(axis, 0, masks.shape[axis] - 1))
        error = (out.diff(dim=axis) - ref.diff(dim=axis)).abs()
        loss = loss + (error * weight).sum() / weight.sum().clamp(min=1.0)
    return loss
