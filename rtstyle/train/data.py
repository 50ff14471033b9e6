"""Training data: folders of images (and video files, sampled), with augmentation.

Unreadable and tiny files are skipped with a warning and counted, never fatal; too few usable
images is a clear error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.images import IMAGE_SUFFIXES, read_image
from ..io.video import VIDEO_SUFFIXES

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    images: list[np.ndarray]  # H x W x 3 uint8
    names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


def load_folder(folder: str | Path, min_side: int = 64, max_side: int = 1024, frames_per_video: int = 16,
                min_count: int = 1, what: str = "images") -> ImageSet:
    """Every readable image (and `frames_per_video` evenly spaced frames of each video) in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} folder not found: {folder}")
    found = ImageSet([], [])
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        try:
            if suffix in IMAGE_SUFFIXES:
                image, _ = read_image(path, max_side)
                frames = [(path.name, image)]
            elif suffix in VIDEO_SUFFIXES:
                frames = [(f"{path.name}#{i}", f) for i, f in _video_frames(path, frames_per_video, max_side)]
            else:
                continue
        except InputError as exc:
            found.skipped.append((path.name, str(exc)))
            continue
        for name, image in frames:
            if min(image.shape[:2]) < min_side:
                found.skipped.append((name, f"smaller than {min_side} px"))
                continue
            found.images.append(image)
            found.names.append(name)
    for name, why in found.skipped:
        log.warning("skipped %s: %s", name, why)
    if len(found.images) < min_count:
        raise InputError(f"only {len(found.images)} usable {what} in {folder} (need at least {min_count}; "
                         f"{len(found.skipped)} skipped)")
    return found


def _video_frames(path: Path, count: int, max_side: int) -> list[tuple[int, np.ndarray]]:
    from ..io.video import VideoReader

    with VideoReader(path, max_side) as reader:
        total = max(reader.info.frames, 1)
        wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
        return [(i, f.image) for i, f in enumerate(reader) if i in wanted]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)


class RandomCrops:
    """Square crops at `size` px with random scale, flips and mild colour jitter."""

    def __init__(self, images: list[np.ndarray], size: int, augment: bool = True, seed: int = 0):
        self.images = [to_tensor(image) for image in images]
        self.size = size
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand(1, generator=self.generator).item()

    def crop(self) -> torch.Tensor:
        index = torch.randint(len(self.images), (1,), generator=self.generator).item()
        image = self.images[index]
        _, height, width = image.shape
        # Scale so the short side is 1x..1.6x the crop (augmenting) or exactly 1.15x.
        scale = self.size * (self._uniform(1.0, 1.6) if self.augment else 1.15) / min(height, width)
        resized = F.interpolate(image[None], scale_factor=scale, mode="bilinear", antialias=True,
                                align_corners=False)[0]
        _, height, width = resized.shape
        top = torch.randint(height - self.size + 1, (1,), generator=self.generator).item()
        left = torch.randint(width - self.size + 1, (1,), generator=self.generator).item()
        patch = resized[:, top:top + self.size, left:left + self.size]
        if self.augment:
            if torch.rand(1, generator=self.generator).item() < 0.5:
                patch = patch.flip(-1)
            patch = jitter(patch, self._uniform(0.9, 1.1), self._uniform(0.9, 1.1), self._uniform(0.9, 1.1))
        return patch.clamp(0, 1)

    def batch(self, count: int) -> torch.Tensor:
        return torch.stack([self.crop() for _ in range(count)])


def jitter(image: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    image = image * brightness
    mean = image.mean()
    image = (image - mean) * contrast + mean
    gray = image.mean(0, keepdim=True)
    return (image - gray) * saturation + gray


def outlier_report(features: torch.Tensor, names: list[str], threshold: float = 3.5) -> list[dict]:
    """Style images whose feature vector (flattened Gram matrices, or style embeddings) lies far from the rest.

    Distance to the median feature, scored as a robust z (median and MAD, Iglewicz and Hoaglin
    1993: above 3.5 is an outlier). A plain z-score cannot flag anything in small sets: with n
    images its maximum is (n - 1) / sqrt(n).
    """
    distances = (features - features.median(0, keepdim=True).values).norm(dim=1)
    median = distances.median()
    mad = (distances - median).abs().median().clamp_min(1e-8)
    z = 0.6745 * (distances - median) / mad
    order = torch.argsort(z, descending=True).tolist()
    return [{"image": names[i], "z": round(float(z[i]), 2), "outlier": bool(z[i] > threshold)} for i in order]
