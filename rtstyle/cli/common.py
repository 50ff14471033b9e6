"""What the commands share: exit codes, the parser whose usage errors are one line, option types and
groups, and the style, model and engine that the options choose."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import (
    BACKENDS,
    DEVICES,
    FLOW_WEIGHT_PER_STRENGTH,
    MAX_SMOOTH_STRENGTH,
    PRECISIONS,
    SMOOTH_DRIFT_PER_STRENGTH,
    SMOOTH_STRENGTH,
    SMOOTHERS,
    ConvertConfig,
    EngineConfig,
    check_smooth_strength,
    file_parallel_frames,
    parse_faces,
)
from ..errors import RtstyleError, StyleError
from ..model.styles import DEFAULT_STYLE, MAX_STRENGTH, StyleChoice

EXIT_FAILURE = 1  # the command ran and failed (a stage, a file of a batch, memory): not the user's arguments
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130



class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (and still exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= MAX_STRENGTH:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_STRENGTH:g}, got {text}")
    return value


def add_engine_options(parser: argparse.ArgumentParser):
    """The engine's options, in a group of their own, which is returned for a command's own additions."""
    group = parser.add_argument_group("engine")
    group.add_argument("--model",
                       help="base network: quality, fast, arbitrary (any picture as the style), or a base "
                            ".safetensors file (default: quality; fast for webcam and serve on a CPU; arbitrary "
                            "with --style-image or --style-dir)")
    group.add_argument("--device", choices=DEVICES, default="auto", help="default: cuda if available, else cpu")
    group.add_argument("--backend", choices=BACKENDS, default="auto", help="default: auto")
    group.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="default: fp16 on CUDA, fp32 on CPU")
    group.add_argument("--threads", type=positive_int,
                       help="CPU threads for the engine (default: every core; fewer leaves room for other work)")
    group.add_argument("--parallel-frames", type=positive_int, metavar="N",
                       help="ONNX Runtime on a CPU: stylize N frames at once, each on its share of the threads "
                            "(more frames per second on a small CPU, each one waits longer; at most --threads; "
                            "default: 2 for files, 1 live)")
    group.add_argument("--autotune", action="store_true",
                       help="compile backend on CUDA: time Triton conv kernels against cuDNN's (a few %% faster, "
                            "tens of seconds more to start)")
    return group


def add_style_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("style")
    group.add_argument("--style", help=f"built-in style name or adapter .safetensors file (default: {DEFAULT_STYLE}; "
                                       "see `rtstyle styles`)")
    group.add_argument("--blend", help="weighted mix of styles, e.g. mosaic:0.6,woodcut:0.4")
    group.add_argument("--strength", type=strength, default=1.0,
                       help=f"0 = no style, 1 = as trained, up to {MAX_STRENGTH:g} = exaggerated (default: 1)")
    group.add_argument("--style-image", metavar="PICTURE[:W,...]",
                       help="any picture as the style (the arbitrary model), or a blend of pictures: "
                            "a.jpg:0.6,b.jpg:0.4")
    group.add_argument("--preserve-color", action="store_true",
                       help="keep the content's colours and take only the style's brushwork and light")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 1 to 65535 (or 0: any free port), got {value}")
    return value


def frame_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) < 16 or int(height) < 16:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 640x480, got {text!r}")
    return int(width), int(height)


def smooth_strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    try:
        return check_smooth_strength(value)
    except RtstyleError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("smoothing strength ")) from None


def scale(text: str) -> float | str:
    from ..pipeline.scale import check_scale_setting

    try:
        return check_scale_setting(text)
    except RtstyleError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("the scale ")) from None


def file_scale(text: str) -> float:
    value = scale(text)
    if isinstance(value, str):
        raise argparse.ArgumentTypeError("auto fits a live camera's frame rate; a file takes a number from 0.25 to 1")
    return value


def add_scale_option(group) -> None:
    group.add_argument("--scale", type=scale, default="auto",
                       help="stylize at this fraction of the frame's size and enlarge the result: 0.5 is a "
                            "quarter of the pixels, about 4x the frames per second on a CPU, with larger strokes "
                            "and softer detail (0.25..1; default: auto, the largest that keeps up with the "
                            "camera, timed at the start; 1 for every pixel whatever the frame rate)")


def add_smooth_options(group) -> None:
    group.add_argument("--smooth", choices=SMOOTHERS, default=ConvertConfig.smooth,
                       help="temporal smoothing against flicker: flow is steadiest (default: none)")
    group.add_argument("--smooth-strength", type=smooth_strength, default=SMOOTH_STRENGTH,
                       help=f"0..{MAX_SMOOTH_STRENGTH:g}: no frame moves further than {SMOOTH_DRIFT_PER_STRENGTH:g} x "
                            "this from its own stylization, in every style; also the most weight the previous frame "
                            f"gets (flow: {FLOW_WEIGHT_PER_STRENGTH:g} x this) (default: {SMOOTH_STRENGTH}; "
                            "docs/smoothing.md)")


def add_faces_option(group) -> None:
    group.add_argument("--faces", type=faces, default=ConvertConfig.faces, metavar="keep|soft|off|S",
                       help="keep faces recognisable: the original blended back into each face found, under a "
                            "feathered ellipse; keep (1), soft (0.5), off (0, the default) or a strength 0..1")


def faces(text: str) -> float:
    try:
        return parse_faces(text)
    except RtstyleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class StyleOptions:
    """What the style options ask for, resolved once: the model, the style or blend, a schedule."""

    model: str
    style: str | None = None
    blend: str | None = None
    strength: float = 1.0
    preserve_color: bool = False
    schedule: str | None = None

    @property
    def choice(self) -> StyleChoice:
        return StyleChoice.parse(self.style, self.blend, self.strength, self.preserve_color)


def style_options(args: argparse.Namespace) -> StyleOptions:
    """--style-image folded into a style or blend, and the model the styles need.

    A picture is a style of the arbitrary model, so pictures (--style-image, --style-dir, or in a
    schedule) make it the default model; `--model` still decides when given.
    """
    style, blend = getattr(args, "style", None), getattr(args, "blend", None)
    style_image = getattr(args, "style_image", None)
    pictures = bool(style_image or getattr(args, "style_dir", None))
    if style_image:
        if style or blend:
            raise StyleError("give one of --style, --blend and --style-image")
        if "," in style_image or ":" in Path(style_image).name:
            blend = style_image
        else:
            style = style_image
    schedule = getattr(args, "style_schedule", None)
    if schedule:
        from ..model.arbitrary import is_picture
        from ..stylizers.schedule import StyleSchedule

        if style or blend:
            raise StyleError("give either --style-schedule or --style/--blend/--style-image")
        pictures = pictures or any(is_picture(name) for _, name in StyleSchedule.parse(schedule).keys)
    model = args.model
    if model is None:
        model = "arbitrary" if pictures else (_adapter_model(style) or _live_cpu_model(args, style, blend)
                                              or "quality")
    return StyleOptions(model, style, blend, getattr(args, "strength", 1.0), getattr(args, "preserve_color", False),
                        schedule)


def _live_cpu_model(args: argparse.Namespace, style: str | None, blend: str | None) -> str | None:
    """"fast" for a live stream (webcam, serve) of built-in styles on a CPU, else None.

    On a CPU the quality model keeps up with a 30 fps camera only at 0.4-0.45 of its size (--scale auto),
    which blurs the picture's shapes away; the fast model keeps up at about 0.6 and keeps them
    (benchmarks/live_models.py). Adapter files name their own base, so they keep the quality default.
    """
    from ..api import lean_path_reason
    from ..config import EngineConfig

    if args.command not in ("webcam", "serve"):
        return None
    names = [style, *(getattr(args, "styles", None) or "").split(","), *(blend or "").split(",")]
    if any(name and Path(name.rsplit(":", 1)[0]).suffix for name in names):  # a file: its base decides
        return None
    engine = EngineConfig(backend=args.backend, device=args.device, precision=args.precision)
    return "fast" if lean_path_reason(engine) is not None else None


def _adapter_model(style: str | None) -> str | None:
    """A built-in base that the --style adapter file names, so `--style mine.safetensors` needs no --model."""
    from ..model.adapters import adapter_base_id
    from ..model.weights import builtin_models

    if not style or not style.endswith(".safetensors") or not Path(style).is_file():
        return None
    base_id = adapter_base_id(style)
    return base_id if base_id in builtin_models() else None



def engine_config(args: argparse.Namespace, live: bool = False) -> EngineConfig:
    """Live streams compute one frame at a time (each frame waits least); files several (more fps)."""
    parallel = getattr(args, "parallel_frames", None) or (1 if live else file_parallel_frames())
    return EngineConfig(backend=args.backend, device=args.device, precision=args.precision,
                        autotune=getattr(args, "autotune", False), threads=getattr(args, "threads", None),
                        parallel_frames=parallel)


def frame_bar(quiet: bool):
    """One progress bar in frames: (bar, progress(done, total))."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="frame", dynamic_ncols=True, disable=quiet or None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, progress


def check_stats_path(path: Path) -> None:
    """--stats-json checked before the work, not after it."""
    from ..errors import OutputError
    from ..io.files import check_writable

    try:
        check_writable(path)
    except OutputError as exc:
        raise OutputError(f"--stats-json: {exc}") from None
