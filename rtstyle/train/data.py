"""Training data: folders of images (and video files, sampled), with augmentation.

Unreadable and tiny files are skipped with a warning and counted, never fatal; too few usable
images is a clear error.

Memory is bounded whatever the folder holds: each image is decoded once to check it, shrunk to
what the crops need (`short_side`), and held as 8 bits while the set stays within `MEMORY_BUDGET`;
past it, photos are read again from their files when a crop needs them, and video frames from
lossless copies in a temporary folder. Crops are made from 8 bits on demand, so no float copy of
the set exists (it was 23 MB per 1024 x 768 photo, 2 GB for 60).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.images import IMAGE_SUFFIXES, read_image, write_image
from ..io.video import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

MEMORY_BUDGET = 1 << 30  # bytes of decoded images a set holds; the rest are read again when needed
MAX_CROP_SCALE = 1.6  # RandomCrops scales the short side to at most this many times the crop


def crop_short_side(size: int) -> int:
    """The short side an image needs for `RandomCrops` at `size`: more detail than that is never sampled."""
    return math.ceil(size * MAX_CROP_SCALE)


class ImageStore(Sequence):
    """H x W x 3 uint8 images: held while within `budget` bytes, else read back from a file when asked for."""

    def __init__(self, budget: int = MEMORY_BUDGET, max_side: int = 1024, short_side: int | None = None):
        self.budget, self.max_side, self.short_side = budget, max_side, short_side
        self.held_bytes = 0
        self._held: list[np.ndarray | None] = []
        self._files: list[Path | None] = []
        self._spool: tempfile.TemporaryDirectory | None = None

    def shrink(self, image: np.ndarray) -> np.ndarray:
        """Down to `short_side` on the short side (never up), as every image of the store is kept."""
        if self.short_side is None or min(image.shape[:2]) <= self.short_side:
            return image
        import cv2

        scale = self.short_side / min(image.shape[:2])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def add(self, image: np.ndarray, source: Path | None) -> None:
        """`image` (already shrunk); `source`: its file, which reads back to the same pixels (None: a video frame)."""
        if self.held_bytes + image.nbytes <= self.budget:
            self._held.append(image)
            self._files.append(None)
            self.held_bytes += image.nbytes
            return
        if source is None:  # a video frame: a lossless copy to read back
            if self._spool is None:
                self._spool = tempfile.TemporaryDirectory(prefix="rtstyle-train-")
            source = Path(self._spool.name) / f"{len(self._held):07d}.png"
            write_image(source, image)
        self._held.append(None)
        self._files.append(source)

    def __len__(self) -> int:
        return len(self._held)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        held = self._held[index]
        if held is not None:
            return held
        image, _ = read_image(self._files[index], self.max_side)
        return self.shrink(eight_bits(image))

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))


def eight_bits(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else (image >> 8).astype(np.uint8)


@dataclass
class ImageSet:
    images: Sequence[np.ndarray]  # H x W x 3 uint8 (an ImageStore)
    names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


def load_folder(folder: str | Path, min_side: int = 64, max_side: int = 1024, frames_per_video: int = 16,
                min_count: int = 1, what: str = "images", short_side: int | None = None,
                budget: int = MEMORY_BUDGET) -> ImageSet:
    """Every readable image (and `frames_per_video` evenly spaced frames of each video) in `folder`.

    `short_side`: images are kept no larger than that on their short side (`crop_short_side` for
    content crops); `budget`: bytes of them held in memory, the rest read again when asked for.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} folder not found: {folder}")
    found = ImageSet(ImageStore(budget, max_side, short_side), [])
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        try:
            if suffix in IMAGE_SUFFIXES:
                image, _ = read_image(path, max_side)
                frames, source = [(path.name, image)], path
            elif suffix in VIDEO_SUFFIXES:
                frames = [(f"{path.name}#{i}", f) for i, f in _video_frames(path, frames_per_video, max_side)]
                source = None
            else:
                continue
        except InputError as exc:
            found.skipped.append((path.name, str(exc)))
            continue
        for name, image in frames:
            if min(image.shape[:2]) < min_side:
                found.skipped.append((name, f"smaller than {min_side} px"))
                continue
            found.images.add(found.images.shrink(eight_bits(image)), source)
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

    def __init__(self, images: Sequence[np.ndarray], size: int, augment: bool = True, seed: int = 0):
        self.images = images  # 8 bits, made float one crop at a time
        self.size = size
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand(1, generator=self.generator).item()

    def crop(self) -> torch.Tensor:
        index = torch.randint(len(self.images), (1,), generator=self.generator).item()
        image = to_tensor(self.images[index])
        _, height, width = image.shape
        # Scale so the short side is 1x..MAX_CROP_SCALE x the crop (augmenting) or exactly 1.15x.
        scale = self.size * (self._uniform(1.0, MAX_CROP_SCALE) if self.augment else 1.15) / min(height, width)
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
