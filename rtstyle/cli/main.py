"""Command line: argument parsing and error reporting. The commands live in `commands.py`.

Every error a user can cause ends as one line on stderr and exit code 2; a failure while running
(a stage's error, memory running out) is one line and exit code 1; Ctrl-C during a conversion keeps
what was written and exits 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .. import __version__
from ..config import (
    BACKENDS,
    DEVICES,
    MAX_SMOOTH_STRENGTH,
    PRECISIONS,
    SMOOTH_STRENGTH,
    SMOOTHERS,
    ConvertConfig,
    check_smooth_strength,
)
from ..errors import PipelineError, RtstyleError, StyleError
from ..model.styles import DEFAULT_STYLE, MAX_STRENGTH

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
    group.add_argument("--smooth", choices=SMOOTHERS, default="none",
                       help="temporal smoothing against flicker: flow is steadiest (default: none)")
    group.add_argument("--smooth-strength", type=smooth_strength, default=SMOOTH_STRENGTH,
                       help=f"0..{MAX_SMOOTH_STRENGTH:g}, the most weight the previous frame gets "
                            f"(default: {SMOOTH_STRENGTH})")


def add_faces_option(group) -> None:
    group.add_argument("--faces", type=faces, default=0.0, metavar="keep|soft|off|S",
                       help="keep faces recognisable: the original blended back into each face found, under a "
                            "feathered ellipse; keep (1), soft (0.5), off (0, the default) or a strength 0..1")


def faces(text: str) -> float:
    from ..pipeline.faces import parse_faces

    try:
        return parse_faces(text)
    except RtstyleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> Parser:
    parser = Parser(prog="rtstyle", description="Real-time style transfer for video files, images and webcams.")
    parser.add_argument("--version", action="version", version=f"rtstyle {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    defaults = ConvertConfig()
    stylize = sub.add_parser("stylize", help="stylize video and image files, or folders of them",
                             description="Stylize a video (audio, frame rate and timestamps kept) or an image; "
                                         "several inputs, folders or globs with -o OUTDIR/ make a batch.")
    # nargs="*", checked in the command: `--ray INPUT` takes the input as the address, and gives it back there.
    stylize.add_argument("input", nargs="*", help="video (mp4, mov, mkv, ...) or image (png, jpg, ...); "
                                                  "or several, folders (searched recursively) and globs")
    stylize.add_argument("-o", "--output", help="output file (default: INPUT_STYLE.EXT beside the input); for a "
                                                "batch, a folder (OUTDIR/) that mirrors the inputs' names")
    stylize.add_argument("--skip-existing", action="store_true",
                         help="batch: skip outputs that are complete (every frame decodes), redo the others")
    existing = stylize.add_mutually_exclusive_group()
    existing.add_argument("-y", "--overwrite", action="store_true", help="replace an existing output")
    existing.add_argument("-n", "--no-overwrite", action="store_true",
                          help="leave an existing output alone and do nothing (exit 0); without -y or -n, a "
                               "terminal asks and anything else is refused")
    add_style_options(stylize)
    stylize.add_argument("--style-schedule", metavar="T:STYLE,...",
                         help="styles that change along a video: seconds:style pairs, e.g. 0:mosaic,8:starry-swirl "
                              "(or pictures: 0:a.jpg,12:b.jpg); the style moves smoothly from each to the next")
    add_engine_options(stylize)
    group = stylize.add_argument_group("conversion")
    group.add_argument("--batch", type=positive_int, default=defaults.batch,
                       help="frames per batch (default: 1 on a CPU, 8 on a GPU: what measured fastest)")
    group.add_argument("--max-side", type=positive_int, help="scale the long side down to this many pixels")
    group.add_argument("--scale", type=file_scale, default=1.0,
                       help="stylize at this fraction of the frame's size and enlarge the result to it: larger "
                            "strokes on big frames, fewer pixels through the network (0.25..1, default: 1)")
    group.add_argument("--crf", type=int, default=defaults.crf, help=f"x264 quality, 0-51 (default: {defaults.crf})")
    group.add_argument("--preset", default=defaults.preset,
                       choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"),
                       help=f"x264 speed against file size; at 1080p on a GPU the encoder bounds the speed "
                            f"(default: {defaults.preset})")
    group.add_argument("--no-audio", action="store_true", help="drop the audio instead of copying it")
    group.add_argument("--codec", default=defaults.codec,
                       help="video encoder: libx264, libx265, libvpx-vp9, libsvtav1, or a hardware one such as "
                            "h264_nvenc where FFmpeg has it (default: libx264; libvpx-vp9 for .webm)")
    group.add_argument("--pix-fmt", help="pixel format to encode, e.g. yuv420p or yuv420p10le (default: the "
                                         "input's depth: 10-bit input gives 10-bit output)")
    add_smooth_options(group)
    add_faces_option(group)
    group.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    group.add_argument("--stats-json", help="write per-stage timings and throughput here")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    group = stylize.add_argument_group("cluster (pip install 'rtstyle[cluster]')")
    group.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run on Ray workers that each load the engine once: 'auto' joins the cluster `ray start` "
                            "made, host:port or ray://host:port another; no ADDRESS starts a local Ray. Inputs and "
                            "outputs must be on storage every node sees")
    group.add_argument("--segment-seconds", type=positive_float, metavar="N",
                       help="split one long video at keyframes into segments of about N seconds, stylized in "
                            "parallel with --ray (one after another without) and joined without re-encoding")

    styles = sub.add_parser("styles", help="list the built-in styles")
    styles.add_argument("--model", default="quality", help="list the styles of this model (default: quality)")
    styles.add_argument("--json", action="store_true", help="print JSON")

    demo = sub.add_parser("demo", help="make a sample clip with audio and stylize it (no files needed)")
    demo.add_argument("-o", "--output", default="rtstyle-demo.mp4", help="default: rtstyle-demo.mp4")
    demo.add_argument("--seconds", type=positive_int, default=4)
    add_style_options(demo)
    add_engine_options(demo)
    webcam = sub.add_parser("webcam", help="stylize a webcam live in a preview window",
                            description="Live preview. Keys: q/Esc quit (or close the window), n/p next/previous "
                                        "style, [ ] strength, o original / side by side, m mirror, k faces "
                                        "off / soft / kept, f fullscreen, s snapshot, h help.")
    webcam.add_argument("--camera", default="0",
                        help="camera index, name (see `rtstyle cameras`) or device path/URL (default: 0)")
    webcam.add_argument("--synthetic", action="store_true", help="use a generated moving scene instead of a camera")
    webcam.add_argument("--size", type=frame_size, default=(640, 480),
                        help="WIDTHxHEIGHT to ask for (default: 640x480)")
    webcam.add_argument("--fps", type=positive_float, default=30.0, help="frame rate to ask for (default: 30)")
    add_style_options(webcam)
    webcam.add_argument("--styles", help="comma-separated styles for n/p (default: all built-in styles)")
    webcam.add_argument("--style-dir", help="a folder of pictures for n/p to cycle through as styles (the arbitrary "
                                            "model)")
    add_scale_option(add_engine_options(webcam))
    group = webcam.add_argument_group("output")
    add_smooth_options(group)
    add_faces_option(group)
    group.add_argument("--record", help="also record the stylized stream to this video file")
    group.add_argument("--no-preview", action="store_true", help="no window (record or measure only)")
    group.add_argument("--virtual-cam", nargs="?", const="", metavar="DEVICE",
                       help="also send the stylized stream to a virtual camera for call apps and OBS (pyvirtualcam; "
                            "optional device, e.g. /dev/video10)")
    group.add_argument("--virtual-cam-mirror", action="store_true",
                       help="mirror the virtual camera's frames (call apps mirror only their own self-view)")
    group.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    group.add_argument("--stats-json", help="write fps, latency and drop statistics here on exit")

    train = sub.add_parser("train", help="train a style adapter from a folder of style images",
                           description="Train a LoRA style adapter on a frozen base model. The result works at once "
                                       "in stylize, webcam and export (--style FILE).")
    train.add_argument("--style-dir", required=True, help="folder of images of one style (50-100 is plenty)")
    train.add_argument("--content-dir", required=True, help="folder of photos and/or videos to learn on")
    train.add_argument("--out", required=True, help="adapter file to write (NAME.safetensors)")
    train.add_argument("--mode", choices=("perceptual", "distill"), default="distill",
                       help="distill: from the arbitrary-style teacher, works offline (default); "
                            "perceptual: VGG losses, needs ImageNet VGG weights")
    train.add_argument("--model", default="fast", help="base model the adapter is for (default: fast)")
    train.add_argument("--rank", type=positive_int, default=16, help="LoRA rank of each conv (default: %(default)s)")
    train.add_argument("--alpha", type=positive_float, default=16.0,
                       help="LoRA scale: the update is alpha / rank times B A (default: %(default)s)")
    train.add_argument("--steps", type=positive_int, default=2000, help="optimizer steps (default: %(default)s)")
    train.add_argument("--batch", type=positive_int, default=4, help="crops per step (default: %(default)s)")
    train.add_argument("--size", type=positive_int, default=256,
                       help="training crop size in pixels (default: %(default)s)")
    train.add_argument("--lr", type=positive_float, help="learning rate (default 2e-3 perceptual, 1.5e-2 distill)")
    train.add_argument("--content-weight", type=float, default=1.0,
                       help="perceptual: content loss weight (default: %(default)s)")
    train.add_argument("--style-weight", type=float, default=5.0,
                       help="perceptual: Gram style loss weight (default: %(default)s)")
    train.add_argument("--tv-weight", type=float, default=1e-4, help="total variation weight (default: %(default)s)")
    train.add_argument("--contrastive-weight", type=float, default=0.0,
                       help="perceptual: contrastive style loss weight (default: %(default)s)")
    train.add_argument("--pixel-loss", choices=("mse", "l1"), default="mse", help="distill: pixel loss to the teacher")
    train.add_argument("--feature-weight", type=float, default=0.0,
                       help="distill: VGG feature loss weight (default: %(default)s)")
    train.add_argument("--face-weight", type=float, default=0.0,
                       help="the face term: faces found in the crops keep their shape, so the adapter leaves "
                            "them recognisable (try 1-5; default: 0, off)")
    train.add_argument("--vgg", choices=("vgg16", "vgg19"), default="vgg16", help="loss network (default: %(default)s)")
    train.add_argument("--vgg-weights", help="ImageNet VGG state dict file (else torchvision's cache)")
    train.add_argument("--pool", type=positive_int, default=1024,
                       help="distill: teacher targets made up front (default: %(default)s)")
    train.add_argument("--checkpoint-every", type=positive_int, default=200,
                       help="write OUT.ckpt.pt every N steps (default: %(default)s)")
    train.add_argument("--sample-every", type=int, default=200,
                       help="write a sample PNG every N steps (0: never; default: %(default)s)")
    train.add_argument("--resume", action="store_true", help="continue from OUT.ckpt.pt")
    train.add_argument("--stop-after", type=positive_int, help="stop this run after N steps (resume later)")
    train.add_argument("--report", action="store_true", help="only check the style folder for outlier images")
    train.add_argument("--device", choices=DEVICES, default="auto", help="default: cuda if available, else cpu")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")

    from_image = sub.add_parser("style-from-image", help="save a picture's style as a style file for --style",
                                description="Make a style file (an adapter of the arbitrary model) from a picture "
                                            "or a blend of pictures; `--style FILE` loads it like a built-in style.")
    from_image.add_argument("picture", help="the picture, or a blend: a.jpg:0.6,b.jpg:0.4")
    from_image.add_argument("-o", "--output", required=True, help="style file to write (NAME.safetensors)")
    from_image.add_argument("--strength", type=strength, default=1.0, help="bake this strength in (default: 1)")

    cameras = sub.add_parser("cameras", help="list the cameras: index, name and the sizes they give")
    cameras.add_argument("--json", action="store_true", help="print JSON")
    info = sub.add_parser("info", help="show devices, runtimes and cached engines")
    info.add_argument("--json", action="store_true", help="print JSON")

    export = sub.add_parser("export", help="build and cache compiled engines for given styles",
                            description="Fuse each style into the model and build its engine into the engine cache.")
    export.add_argument("styles", nargs="+", help="style names or adapter files (a blend counts as one: a:0.5,b:0.5)")
    export.add_argument("--strength", type=strength, default=1.0)
    export.add_argument("-o", "--output-dir", help="also copy each exported ONNX graph here")
    add_engine_options(export)

    serve = sub.add_parser("serve", help="a web page that stylizes the browser's camera over WebRTC",
                           description="Serve a page that sends the browser's camera to this machine's engine over "
                                       "WebRTC and shows it stylized (pip install 'rtstyle[serve]').")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1; another needs a token)")
    serve.add_argument("--port", type=int, default=8080, help="default: 8080")
    serve.add_argument("--token", help="secret every request must carry (made up and printed when --host is "
                                       "not local and none is given)")
    serve.add_argument("--max-viewers", type=positive_int,
                       help="viewers served at once; more are refused (default: 1 on a CPU, 4 on a GPU)")
    serve.add_argument("--cert-file", help="HTTPS certificate (browsers give a camera only to https or localhost)")
    serve.add_argument("--key-file", help="HTTPS private key")
    serve.add_argument("--style", help=f"style shown first (default: {DEFAULT_STYLE})")
    serve.add_argument("--styles", help="comma-separated styles for the picker (default: all built-in styles)")
    serve.add_argument("--strength", type=strength, default=1.0, help="starting strength (default: 1)")
    serve.add_argument("--style-image", metavar="PICTURE", help="a picture as the style shown first (the arbitrary "
                                                                "model)")
    serve.add_argument("--style-dir", help="a folder of pictures for the picker (the arbitrary model)")
    add_scale_option(add_engine_options(serve))
    add_smooth_options(serve.add_argument_group("smoothing"))
    add_faces_option(serve)
    return parser


def resolve_style_arguments(args: argparse.Namespace) -> None:
    """Fold --style-image into --style/--blend and pick the model the styles need.

    A picture is a style of the arbitrary model, so pictures (--style-image, --style-dir, or in a
    schedule) make it the default model; `--model` still decides when given.
    """
    if not hasattr(args, "model"):
        return
    style_image = getattr(args, "style_image", None)
    pictures = bool(style_image or getattr(args, "style_dir", None))
    if style_image:
        if args.style or getattr(args, "blend", None):
            raise StyleError("give one of --style, --blend and --style-image")
        if "," in style_image or ":" in Path(style_image).name:
            args.blend = style_image
        else:
            args.style = style_image
    schedule = getattr(args, "style_schedule", None)
    if schedule:
        from ..model.arbitrary import is_picture
        from ..pipeline.schedule import StyleSchedule

        if args.style or getattr(args, "blend", None):
            raise StyleError("give either --style-schedule or --style/--blend/--style-image")
        pictures = pictures or any(is_picture(name) for _, name in StyleSchedule.parse(schedule).keys)
    if args.model is None:
        args.model = "arbitrary" if pictures else (_adapter_model(args) or _live_cpu_model(args) or "quality")


def _live_cpu_model(args: argparse.Namespace) -> str | None:
    """"fast" for a live stream (webcam, serve) of built-in styles on a CPU, else None.

    On a CPU the quality model keeps up with a 30 fps camera only at 0.4-0.45 of its size (--scale auto),
    which blurs the picture's shapes away; the fast model keeps up at about 0.6 and keeps them
    (benchmarks/live_models.py). Adapter files name their own base, so they keep the quality default.
    """
    from ..api import lean_path_reason
    from ..config import EngineConfig

    if args.command not in ("webcam", "serve"):
        return None
    names = [getattr(args, "style", None), *(getattr(args, "styles", None) or "").split(","),
             *(getattr(args, "blend", None) or "").split(",")]
    if any(name and Path(name.rsplit(":", 1)[0]).suffix for name in names):  # a file: its base decides
        return None
    engine = EngineConfig(backend=args.backend, device=args.device, precision=args.precision)
    return "fast" if lean_path_reason(engine) is not None else None


def _adapter_model(args: argparse.Namespace) -> str | None:
    """A built-in base that the --style adapter file names, so `--style mine.safetensors` needs no --model."""
    from ..model.adapters import adapter_base_id
    from ..model.weights import builtin_models

    style = getattr(args, "style", None)
    if not style or not style.endswith(".safetensors") or not Path(style).is_file():
        return None
    base_id = adapter_base_id(style)
    return base_id if base_id in builtin_models() else None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO if args.verbose or args.debug else logging.WARNING,
                        format="rtstyle: %(levelname)s: %(message)s")
    from . import commands

    try:
        resolve_style_arguments(args)
        return getattr(commands, args.command.replace("-", "_"))(args)
    except PipelineError as exc:  # a stage failed while running: not a usage error, so not its exit code
        if args.debug:
            raise
        print(f"rtstyle: error: {exc}{_memory_hint(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except RtstyleError as exc:
        if args.debug:
            raise
        print(f"rtstyle: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rtstyle: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        what = "error" if _out_of_memory(exc) else "internal error"
        print(f"rtstyle: {what}: {exc.__class__.__name__}: {exc}{_memory_hint(exc)} (rerun with --debug for details)",
              file=sys.stderr)
        return EXIT_FAILURE


def _out_of_memory(exc: BaseException | None) -> bool:
    """Whether `exc` or what caused it is the host or the GPU running out of memory (torch's CUDA OOM included)."""
    while exc is not None:
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            return True
        exc = exc.__cause__
    return False


def _memory_hint(exc: BaseException) -> str:
    return "; out of memory: a smaller --batch or --max-side needs less" if _out_of_memory(exc) else ""


if __name__ == "__main__":
    sys.exit(main())
