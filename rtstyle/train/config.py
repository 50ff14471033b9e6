"""What a training run is asked to do, and its defaults, written once (torch-free: the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

MODES = ("perceptual", "distill")
#: Distill: the best of 2e-3, 5e-3, 1.5e-2 and 3e-2 on benchmarks/train_eval.py (1500 steps; README).
DEFAULT_LR = {"perceptual": 2e-3, "distill": 1.5e-2}


@dataclass(frozen=True)
class PerceptualWeights:
    content: float = 1.0
    style: float = 5.0
    tv: float = 1e-4
    contrastive: float = 0.0
    multiscale: bool = True  # also match Grams at half resolution


@dataclass(frozen=True)
class TrainConfig:
    style_dir: Path
    content_dir: Path
    out: Path
    mode: str = "distill"
    model: str = "fast"
    rank: int = 16
    alpha: float = 16.0
    conv_targets: tuple[str, ...] | None = None  # default: every conv (see default_targets)
    norm_adapters: bool = True
    steps: int = 2000
    batch: int = 4
    size: int = 256
    lr: float | None = None  # default per mode: DEFAULT_LR
    warmup: int = 100
    clip: float = 1.0
    perceptual: PerceptualWeights = field(default_factory=PerceptualWeights)
    pixel_loss: str = "mse"  # distill: mse (what PSNR measures) or l1 to the teacher
    pixel_weight: float = 1.0
    feature_weight: float = 0.0  # distill: VGG feature loss to the teacher (needs VGG weights)
    # Both modes: temporal loss on pairs of frames made by synthetic motion (losses.temporal_loss).
    # Each step then stylizes a second, moved batch: 2.6x the time of a step without it (CPU, measured
    # by benchmarks/temporal_training.py).
    temporal_weight: float = 0.0
    face_weight: float = 0.0  # the face term (losses.face_structure_loss) on faces found in the crops
    vgg: str = "vgg16"
    vgg_weights: Path | None = None
    pool: int = 1024  # distill: (content, teacher output) pairs made up front
    min_style_images: int = 5
    min_content_images: int = 5
    checkpoint_every: int = 200
    sample_every: int = 200
    resume: bool = False
    stop_after: int | None = None  # end this session after N more steps (checkpointed); resume later
    device: str = "auto"
    seed: int = 0
    name: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}; use perceptual or distill")
        for label, value, low in (("steps", self.steps, 1), ("batch", self.batch, 1), ("size", self.size, 32),
                                  ("rank", self.rank, 1)):
            if value < low:
                raise InputError(f"{label} must be at least {low}, got {value}")
        if not self.face_weight >= 0:
            raise InputError(f"face weight must be 0 or more, got {self.face_weight}")
        if not self.temporal_weight >= 0:
            raise InputError(f"temporal weight must be 0 or more, got {self.temporal_weight}")
        if self.pixel_loss not in ("mse", "l1"):
            raise InputError(f"unknown pixel loss {self.pixel_loss!r}; use mse or l1")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.mode])
        if not self.lr > 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if self.out.suffix != ".safetensors":
            raise InputError(f"the adapter file must end in .safetensors, got {self.out.name}")
