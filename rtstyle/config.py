"""Configuration for the engine and file conversion, as plain dataclasses passed down explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass

BACKENDS = ("auto", "torch", "jit", "compile", "onnx", "tensorrt")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16")
SMOOTHERS = ("none", "ema", "adaptive", "flow")
SMOOTH_STRENGTH = 0.7  # the most weight ema/adaptive give the previous output, and the drift budget's scale
MAX_SMOOTH_STRENGTH = 0.95  # beyond it the output barely follows the input any more
LEAST_SCALE = 0.25  # of the frame's width and height that a stream may be stylized at (pipeline/scale.py)
#: A scale setting that asks for `pipeline.scale.fitted_scale` at the start of a stream.
AUTO = "auto"
#: A smoother moves no frame further than this times the strength from its own stylization (mean
#: |output - stylized| in 0..1): the default 0.7 allows 0.0294, so a clip's mean drift stays under
#: 0.03. The busy styles would drift up to twice as far at the same blend weight, the calm ones
#: never reach it (benchmarks/temporal.py); the cap gives a strength one meaning in every style.
#: See docs/smoothing.md.
SMOOTH_DRIFT_PER_STRENGTH = 0.042
#: The flow smoother gives the past up to this times the strength as weight (at most
#: MAX_SMOOTH_STRENGTH; 0.875 at the default): it blends only where the motion-compensated past is
#: trusted, and the drift budget holds the styles that flicker much, so the calm styles, which never
#: come near the budget, take the extra steadiness (warp error left on the calmest style 0.28 -> 0.19
#: of per-frame, the busiest unchanged at 0.35; benchmarks/temporal_ablation.py).
FLOW_WEIGHT_PER_STRENGTH = 1.25


def check_smooth_strength(strength: float) -> float:
    """One rule for every smoother (torch and host) and the CLI."""
    from .errors import InputError

    if not 0.0 <= strength <= MAX_SMOOTH_STRENGTH:
        raise InputError(f"smoothing strength must be between 0 and {MAX_SMOOTH_STRENGTH:g}, got {strength:g}")
    return strength


def check_scale(scale: float) -> float:
    """`scale` if it is one the pipeline takes, else an InputError saying which are."""
    from .errors import InputError

    if not LEAST_SCALE <= scale <= 1.0:
        raise InputError(f"the scale must be between {LEAST_SCALE} and 1, got {scale:g}")
    return scale


def check_scale_setting(value) -> float | str:
    """A scale (a number, or its text) or AUTO, checked; an InputError for anything else."""
    from .errors import InputError

    if value == AUTO:
        return AUTO
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise InputError(f"the scale must be a number or {AUTO}, got {value!r}") from None
    return check_scale(scale)


#: --faces by name: how much of the original comes back in each face (pipeline/faces.py).
FACES_MODES = {"off": 0.0, "soft": 0.5, "keep": 1.0}
MAX_ENCODERS = 16  # encoders one file conversion runs at once (jobs/encoders.py)


def parse_faces(text: str | float) -> float:
    """`keep`, `soft`, `off` or a strength 0..1; a clear one-line error otherwise."""
    from .errors import InputError

    if isinstance(text, int | float):
        value = float(text)
    elif str(text).lower() in FACES_MODES:
        return FACES_MODES[str(text).lower()]
    else:
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"--faces takes keep, soft, off or a strength 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise InputError(f"face strength must be between 0 and 1, got {value:g}")
    return value


def file_parallel_frames() -> int:
    """Frames the lean CPU path computes at once for files (`--parallel-frames`): two, on two cores
    or more. A 640x360 clip, whole process on 2 cores: 1.15x the fps of one at a time (quality model,
    benchmarks/lean_vs_peer.py), for about 100 MB more memory. Live streams keep one: with two, the
    virtual camera got 1.5x the fps but each frame came about 25 ms later (benchmarks/virtual_cam.py)."""
    return min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class EngineConfig:
    """How the fused network runs."""

    backend: str = "auto"
    device: str = "auto"
    precision: str = "auto"  # fp16 on CUDA, fp32 on CPU
    # compile on CUDA: time Triton convolution kernels against cuDNN's for each new shape. Measured on an
    # H100 at 1080p batch 8: +3% (quality) / +4% (fast) fps for 17-33 s more warm-up per new shape.
    autotune: bool = False
    threads: int | None = None  # CPU threads of the engine (--threads); None: every core
    # Lean CPU path (--parallel-frames): frames computed at once, each on its share of the threads.
    parallel_frames: int = 1
    # Shape range for engines built ahead of time (TensorRT profiles). Both sides share one
    # range so portrait and landscape frames fit the same profile.
    max_batch: int = 8
    min_side: int = 64
    max_side: int = 1920
    opt_shape: tuple[int, int] = (720, 1280)  # (height, width) TensorRT tunes for


@dataclass(frozen=True)
class ConvertConfig:
    """File conversion: batching, resizing, queue depth and encoder settings."""

    batch: int | None = None  # None: the stylizer's own choice (1 on the lean CPU path, 8 on CUDA, else 4)
    max_side: int | None = None  # scale the long side down to this many pixels
    queue_frames: int = 16  # bound on frames waiting between two stages
    crf: int = 18  # x264 quality: lower is better, 18 is visually lossless for most content
    preset: str = "veryfast"
    copy_audio: bool = True
    codec: str | None = None  # None: libx264, or libvpx-vp9 for .webm; any encoder PyAV's FFmpeg has
    pix_fmt: str | None = None  # None: the input's depth (yuv420p, or yuv420p10le for 10-bit input)
    smooth: str = "none"  # temporal smoother: none, ema, adaptive, flow
    smooth_strength: float = SMOOTH_STRENGTH
    scale: float = 1.0  # stylize at this fraction of the (resized) frame and enlarge back: larger strokes
    faces: float = 0.0  # how much of the original comes back in faces, 0..1 (pipeline/faces.py)
    encoders: int | str = "auto"  # encoders writing chunks of one output at once (jobs/encoders.py), or auto

    def __post_init__(self) -> None:
        from .errors import InputError

        check_scale(self.scale)
        parse_faces(self.faces)
        if self.encoders != "auto" and (isinstance(self.encoders, bool) or not isinstance(self.encoders, int)
                                        or not 1 <= self.encoders <= MAX_ENCODERS):
            raise InputError(f"encoders must be auto or 1 to {MAX_ENCODERS}, got {self.encoders!r}")

        if self.batch is not None and not 1 <= self.batch <= 256:
            raise InputError(f"batch must be between 1 and 256, got {self.batch}")
        if self.max_side is not None and self.max_side < 16:
            raise InputError(f"max side must be at least 16 pixels, got {self.max_side}")
        if not 0 <= self.crf <= 51:
            raise InputError(f"crf must be between 0 and 51, got {self.crf}")
