"""Stylize files: one video or picture, a batch of them, or one long video in segments."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import MAX_ENCODERS, ConvertConfig, EngineConfig
from ..errors import InputError, OutputError
from ..model.styles import StyleChoice
from .common import (
    EXIT_INTERRUPTED,
    StyleOptions,
    add_engine_options,
    add_faces_option,
    add_smooth_options,
    add_style_options,
    check_stats_path,
    engine_config,
    file_scale,
    frame_bar,
    positive_float,
    positive_int,
    style_options,
)
from .overwrite import add_overwrite_options, may_write

if TYPE_CHECKING:
    from ..jobs.cluster import RayConfig
    from ..jobs.convert import ConvertResult


def add_parser(sub) -> None:
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
    add_overwrite_options(stylize)
    add_style_options(stylize)
    stylize.add_argument("--style-schedule", metavar="T:STYLE,...",
                         help="styles that change along a video: seconds:style pairs, e.g. 0:mosaic,8:starry-swirl "
                              "(or pictures: 0:a.jpg,12:b.jpg); the style moves smoothly from each to the next")
    add_engine_options(stylize)
    group = stylize.add_argument_group("conversion")
    group.add_argument("--batch", type=positive_int, default=defaults.batch,
                       help="frames per batch (default: what measured fastest for the engine: 1 on the lean CPU path, "
                            "4 with torch on a CPU, 8 on a GPU)")
    group.add_argument("--max-side", type=positive_int, help="scale the long side down to this many pixels")
    group.add_argument("--scale", type=file_scale, default=1.0,
                       help="stylize at this fraction of the frame's size and enlarge the result to it: larger "
                            "strokes on big frames, fewer pixels through the network (0.25..1, default: 1)")
    group.add_argument("--crf", type=int, default=defaults.crf,
                       help=f"quality, 0-51, lower is better: x264/x265's crf, NVENC's cq (default: {defaults.crf})")
    group.add_argument("--preset", default=defaults.preset,
                       choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"),
                       help=f"encoder speed against file size (x264/x265; NVENC's p1-p7 by the same names); at "
                            f"1080p on a GPU the encoder bounds the speed: see --encoders (default: {defaults.preset})")
    group.add_argument("--no-audio", action="store_true", help="drop the audio instead of copying it")
    group.add_argument("--codec", default=defaults.codec,
                       help="video encoder: libx264, libx265, libvpx-vp9, libsvtav1, or a hardware one such as "
                            "h264_nvenc where FFmpeg has it (default: libx264; libvpx-vp9 for .webm)")
    group.add_argument("--encoders", type=encoder_setting, default=defaults.encoders, metavar="N",
                       help="encoders writing chunks of one video at once, joined without re-encoding, for when "
                            "the encoder bounds the speed (x264/x265 to .mp4, .mov, .mkv); auto: as many as the "
                            "cores feed on a GPU, one on a CPU (default: auto)")
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


@dataclass(frozen=True)
class StylizeRequest:
    """`rtstyle stylize`'s options, read once: nothing later changes what the user typed."""

    inputs: tuple[str, ...]
    output: str | None
    styles: StyleOptions
    engine: EngineConfig
    convert: ConvertConfig
    ray: RayConfig | None = None
    segment_seconds: float | None = None
    skip_existing: bool = False
    overwrite: bool = False
    keep_existing: bool = False
    json: bool = False
    stats_json: str | None = None
    quiet: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StylizeRequest:
        inputs, ray = tuple(args.input), None
        if args.ray is not None:
            from ..jobs.cluster import RayConfig

            address = args.ray
            if address and Path(address).exists():  # `--ray in.mp4`: argparse took the input for the address
                inputs, address = (address, *inputs), ""
            ray = RayConfig(address=address or None, log_to_driver=not (args.json or args.quiet))
        convert = ConvertConfig(batch=args.batch, max_side=args.max_side, crf=args.crf, preset=args.preset,
                                copy_audio=not args.no_audio, codec=args.codec, pix_fmt=args.pix_fmt,
                                smooth=args.smooth, smooth_strength=args.smooth_strength, scale=args.scale,
                                faces=args.faces, encoders=args.encoders)
        return cls(inputs, args.output, style_options(args), engine_config(args), convert, ray, args.segment_seconds,
                   args.skip_existing, args.overwrite, args.no_overwrite, args.json, args.stats_json,
                   args.quiet or args.json)

    @property
    def is_batch(self) -> bool:
        single = Path(self.inputs[0])
        out = self.output or ""
        return (len(self.inputs) > 1 or single.is_dir()
                or not single.exists() and any(c in self.inputs[0] for c in "*?[")
                or out.endswith(("/", "\\")) or bool(out) and Path(out).is_dir())


def encoder_setting(text: str) -> int | str:
    """`--encoders`: auto or a count from 1 to MAX_ENCODERS."""
    if text == "auto":
        return text
    count = positive_int(text)
    if count > MAX_ENCODERS:
        raise argparse.ArgumentTypeError(f"takes auto or 1 to {MAX_ENCODERS}, got {count}")
    return count


def _default_output(src: Path, choice: StyleChoice, scheduled: bool = False) -> Path:
    label = "scheduled" if scheduled else "+".join(Path(name).stem for name in choice.blend)
    return src.with_name(f"{src.stem}_{label}{src.suffix}")


def load(styles: StyleOptions, engine: EngineConfig):
    """The stylizer the options ask for: one style (or blend), or a style schedule."""
    from ..api import load_scheduled_stylizer, load_stylizer

    if styles.schedule:
        from ..stylizers.schedule import StyleSchedule

        return load_scheduled_stylizer(styles.model, StyleSchedule.parse(styles.schedule), styles.strength, engine,
                                       styles.preserve_color)
    return load_stylizer(styles.model, styles.choice, engine)


def convert(src: Path, dst: Path, styles: StyleOptions, engine: EngineConfig, config: ConvertConfig,
            quiet: bool) -> ConvertResult:
    from ..jobs.convert import check_paths, convert_file

    check_paths(src, dst)  # fail on bad paths before the model is built
    stylizer = load(styles, engine)
    if not quiet:
        smoothing = f", {config.smooth} smoothing {config.smooth_strength:g}" if config.smooth != "none" else ""
        print(f"{src.name} -> {dst}  [{stylizer.description}{smoothing}]", file=sys.stderr)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm  # imported here: a photo shows no bar, and tqdm costs 20 ms to import

            bar = tqdm(total=total or None, unit="frame", dynamic_ncols=True, disable=quiet or None,
                       file=sys.stderr)
        bar.update(done - bar.n)

    try:
        return convert_file(src, dst, stylizer, config, progress)
    finally:
        if bar is not None:
            bar.close()


def _convert_segmented(src: Path, dst: Path, request: StylizeRequest) -> ConvertResult:
    """--segment-seconds: the segments on Ray workers, or one after another here without --ray."""
    from ..io.images import is_image_path
    from ..jobs.convert import check_paths

    if is_image_path(src):
        raise InputError("--segment-seconds splits a video; this input is an image")
    check_paths(src, dst)  # before a model is built or a cluster reached
    styles = request.styles
    bar, progress = frame_bar(request.quiet)
    try:
        if request.ray is not None:
            from ..jobs.cluster import convert_segmented_on_ray

            with contextlib.redirect_stdout(sys.stderr):  # Ray prints its workers' errors on stdout: keep it ours
                return convert_segmented_on_ray(src, dst, styles.model, styles.choice, request.engine,
                                                request.convert, request.segment_seconds, request.ray, progress)
        from ..api import load_stylizer
        from ..jobs.segments import convert_segmented

        stylizer = load_stylizer(styles.model, styles.choice, request.engine)
        return convert_segmented(src, dst, stylizer, request.convert, request.segment_seconds, progress)
    finally:
        bar.close()


def run(args: argparse.Namespace) -> int:
    request = StylizeRequest.from_args(args)
    if not request.inputs:
        raise InputError("nothing to stylize: give a video or image, or several, folders or globs with -o OUTDIR/")
    if request.styles.schedule and (request.ray is not None or request.segment_seconds):
        raise InputError("--style-schedule runs in one process: leave out --ray and --segment-seconds")
    if request.is_batch:
        if request.segment_seconds:
            raise InputError("--segment-seconds splits one video; give one input file")
        return stylize_batch(request)
    if request.ray is not None and not request.segment_seconds:
        raise InputError("--ray runs a batch (several inputs, or -o OUTDIR/) or the segments of one video "
                         "(--segment-seconds N)")
    src = Path(request.inputs[0])
    if request.stats_json:
        check_stats_path(Path(request.stats_json))  # before the conversion, not after it
    choice = request.styles.choice
    dst = Path(request.output) if request.output else _default_output(src, choice, bool(request.styles.schedule))
    if not may_write(dst, request.overwrite, request.keep_existing):
        return 0
    if request.segment_seconds:
        result = _convert_segmented(src, dst, request)
    else:
        result = convert(src, dst, request.styles, request.engine, request.convert, request.quiet)
    if request.stats_json:
        Path(request.stats_json).write_text(json.dumps(result.metrics or {"frames": result.frames,
                                                                           "seconds": result.seconds}, indent=2))
    return report(result, request.json)


def stylize_batch(request: StylizeRequest) -> int:
    """Many files, one stylizer (per Ray worker with --ray), one progress bar; a failed file is one line and the
    batch goes on."""
    from ..jobs.batch import expand, make_output_folder, run_batch

    if not request.output:
        raise OutputError("a batch needs -o OUTDIR/ for its outputs")
    if request.stats_json:  # not left unused without a word
        raise InputError("--stats-json writes one file's timings; for a batch, --json prints each file's")
    out_dir = Path(request.output)
    jobs = expand(list(request.inputs), out_dir)
    if not jobs:
        raise InputError("no video or image files in the inputs")
    make_output_folder(out_dir)
    ray, quiet = request.ray, request.quiet
    if ray is None:
        stylizer = load(request.styles, request.engine)
        if not quiet:
            print(f"{len(jobs)} files -> {out_dir}  [{stylizer.description}]", file=sys.stderr)
    elif not quiet:
        print(f"{len(jobs)} files -> {out_dir}  [Ray: {ray.address or 'local'}]", file=sys.stderr)
    bar, progress = frame_bar(quiet)
    try:
        if ray is None:
            batch = run_batch(jobs, stylizer, request.convert, request.skip_existing, request.overwrite, progress)
        else:
            from ..jobs.cluster import run_ray_batch

            with contextlib.redirect_stdout(sys.stderr):  # Ray prints its workers' errors on stdout: keep it ours
                batch = run_ray_batch(jobs, request.styles.model, request.styles.choice, request.engine,
                                      request.convert, ray, request.skip_existing, request.overwrite, progress)
    finally:
        bar.close()
    for result in batch.results:
        if result.status == "failed" and not request.json:
            print(f"rtstyle: failed: {result.error}", file=sys.stderr)
    counts = batch.counts()
    for line in batch.kept_partials():
        print(f"rtstyle: interrupted: {line}", file=sys.stderr)
    print(json.dumps(batch.summary(), indent=2) if request.json else batch.line())
    if batch.interrupted:
        return 128 + batch.signal if batch.signal else EXIT_INTERRUPTED
    return 1 if counts["failed"] else 0


def report(result: ConvertResult, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"output": str(result.output), "frames": result.frames, "seconds": round(result.seconds, 3),
                          "fps": round(result.fps, 2), "width": result.width, "height": result.height,
                          "interrupted": result.interrupted}))
    else:
        print(f"wrote {result.output} ({result.width}x{result.height}, {result.frames} "
              f"frame{'s' * (result.frames != 1)}, {result.seconds:.1f} s, {result.fps:.1f} fps)")
    if result.interrupted:
        print(f"rtstyle: interrupted: {result.output} holds the first {result.frames} frames", file=sys.stderr)
        return 128 + result.signal if result.signal else EXIT_INTERRUPTED
    return 0

