"""The CLI commands. Each takes the parsed arguments and returns an exit code; the terminal is theirs."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ..config import ConvertConfig, EngineConfig
from ..errors import InputError, OutputError
from ..model.styles import StyleChoice
from ..pipeline.convert import ConvertResult
from .main import EXIT_INTERRUPTED


def _engine_config(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(backend=args.backend, device=args.device, precision=args.precision,
                        autotune=getattr(args, "autotune", False), threads=getattr(args, "threads", None))


def _default_output(src: Path, choice: StyleChoice) -> Path:
    label = "+".join(Path(name).stem for name in choice.blend)
    return src.with_name(f"{src.stem}_{label}{src.suffix}")


def _convert(src: Path, dst: Path, args: argparse.Namespace, config: ConvertConfig, quiet: bool,
             choice: StyleChoice | None = None) -> ConvertResult:
    from ..api import load_stylizer
    from ..pipeline.convert import check_paths, convert_file

    check_paths(src, dst)  # fail on bad paths before the model is built
    choice = choice or StyleChoice.parse(args.style, args.blend, args.strength)
    stylizer = load_stylizer(args.model, choice, _engine_config(args))
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


def _config(args: argparse.Namespace) -> ConvertConfig:
    return ConvertConfig(batch=args.batch, max_side=args.max_side, crf=args.crf, preset=args.preset,
                         copy_audio=not args.no_audio, codec=args.codec, pix_fmt=args.pix_fmt, smooth=args.smooth,
                         smooth_strength=args.smooth_strength)


def _is_batch(args: argparse.Namespace) -> bool:
    single = Path(args.input[0])
    out = args.output or ""
    return (len(args.input) > 1 or single.is_dir() or not single.exists() and any(c in args.input[0] for c in "*?[")
            or out.endswith(("/", "\\")) or bool(out) and Path(out).is_dir())


def stylize(args: argparse.Namespace) -> int:
    if _is_batch(args):
        return stylize_batch(args)
    src = Path(args.input[0])
    choice = StyleChoice.parse(args.style, args.blend, args.strength)
    dst = Path(args.output) if args.output else _default_output(src, choice)
    if dst.exists() and not args.overwrite:
        if args.no_overwrite:
            print(f"rtstyle: {dst} exists; left as it is (-n)", file=sys.stderr)
            return 0
        if not _confirm_overwrite(dst):
            raise OutputError(f"{dst} exists; -y replaces it, -n leaves it")
    result = _convert(src, dst, args, _config(args), quiet=args.quiet or args.json, choice=choice)
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(result.metrics or {"frames": result.frames,
                                                                        "seconds": result.seconds}, indent=2))
    return _report(result, args.json)


def stylize_batch(args: argparse.Namespace) -> int:
    """Many files, one stylizer, one progress bar; a failed file is one line and the batch goes on."""
    from dataclasses import asdict

    from tqdm import tqdm

    from ..api import load_stylizer
    from ..pipeline.batch import expand, run_batch

    if not args.output:
        raise OutputError("a batch needs -o OUTDIR/ for its outputs")
    out_dir = Path(args.output)
    jobs = expand(args.input, out_dir)
    if not jobs:
        raise InputError("no video or image files in the inputs")
    out_dir.mkdir(parents=True, exist_ok=True)
    stylizer = load_stylizer(args.model, StyleChoice.parse(args.style, args.blend, args.strength),
                             _engine_config(args))
    quiet = args.quiet or args.json
    if not quiet:
        print(f"{len(jobs)} files -> {out_dir}  [{stylizer.description}]", file=sys.stderr)
    bar = tqdm(total=None, unit="frame", dynamic_ncols=True, disable=quiet or None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        batch = run_batch(jobs, stylizer, _config(args), args.skip_existing, args.overwrite, progress)
    finally:
        bar.close()
    for result in batch.results:
        if result.status == "failed" and not args.json:
            print(f"rtstyle: failed: {result.error}", file=sys.stderr)
    counts = {status: sum(r.status == status for r in batch.results) for status in ("done", "skipped", "failed")}
    if args.json:
        print(json.dumps({"files": [asdict(r) for r in batch.results], **counts}, indent=2))
    else:
        print(f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    if any(r.status == "interrupted" for r in batch.results):
        return EXIT_INTERRUPTED
    return 1 if counts["failed"] else 0


def _confirm_overwrite(dst: Path) -> bool:
    """ffmpeg's habit: ask on a terminal, refuse anywhere else (scripts, pipes, CI)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    try:
        answer = input(f"{dst} exists. Overwrite? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _report(result: ConvertResult, as_json: bool) -> int:
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


def styles(args: argparse.Namespace) -> int:
    from ..model.adapters import Adapter
    from ..model.styles import builtin_styles, styles_dir

    names = builtin_styles(args.model)
    rows = []
    for name in names:
        adapter = Adapter.load(styles_dir(args.model) / f"{name}.safetensors")
        rows.append({"name": name, "description": adapter.description,
                     "teacher_style": adapter.provenance.get("teacher_style")})
    if args.json:
        print(json.dumps({"model": args.model, "styles": rows}, indent=2))
        return 0
    if not rows:
        print(f"the {args.model} model has no built-in styles")
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{len(rows)} built-in styles for the {args.model} model:")
    for row in rows:
        print(f"  {row['name']:<{width}}  {row['description']}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from ..io.synthetic import write_clip

    with tempfile.TemporaryDirectory(prefix="rtstyle-demo-") as folder:
        clip = write_clip(Path(folder) / "sample.mp4", seconds=args.seconds)
        config = ConvertConfig(smooth=getattr(args, "smooth", "none"),
                               smooth_strength=getattr(args, "smooth_strength", ConvertConfig.smooth_strength))
        result = _convert(clip, Path(args.output), args, config, quiet=False)
    return _report(result, as_json=False)


def cameras(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..io.cameras import list_cameras

    found = list_cameras()
    if args.json:
        print(json.dumps([asdict(camera) for camera in found], indent=2))
        return 0
    if not found:
        print("no cameras found (on Linux: no /dev/video* that can capture)")
        return 0
    for camera in found:
        sizes = ", ".join(f"{w}x{h}" for w, h in camera.sizes[:8]) or "sizes not listed"
        where = f" ({camera.path})" if camera.path else ""
        print(f"{camera.index}: {camera.name}{where}  {sizes}")
    return 0


def info(args: argparse.Namespace) -> int:
    from ..backends.cache import cache_limit_bytes, default_cache_dir, list_cached
    from ..runtime_info import runtime_info

    report = runtime_info()
    cache = default_cache_dir()
    report["engine_cache"] = {"folder": str(cache), "limit_bytes": cache_limit_bytes(),
                              "engines": [{"file": p.name, "bytes": p.stat().st_size} for p in list_cached(cache)]}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for key, value in report.items():
        if key == "engine_cache":
            continue
        print(f"{key:<22} {value}")
    engines = report["engine_cache"]["engines"]
    total = sum(entry["bytes"] for entry in engines)
    print(f"{'engine cache':<22} {cache} ({len(engines)} file{'s' * (len(engines) != 1)}, {total / 2**20:.1f} MB "
          f"of {report['engine_cache']['limit_bytes'] / 2**20:.0f} MB)")
    for entry in engines:
        print(f"  {entry['file']}  {entry['bytes'] / 1e6:.1f} MB")
    return 0


def export(args: argparse.Namespace) -> int:
    from ..api import load_stylizer
    from ..backends.cache import read_cached
    from ..model.styles import parse_blend

    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None and not out_dir.is_dir():
        raise OutputError(f"output folder does not exist: {out_dir}")
    for spec in args.styles:
        blend = parse_blend(spec) if ":" in spec else {spec: 1.0}
        stylizer = load_stylizer(args.model, StyleChoice(blend, args.strength), _engine_config(args), lean=False)
        artefact = getattr(stylizer.engine, "path", None)
        where = f" -> {artefact}" if artefact else " (nothing to cache for this backend)"
        print(f"{spec}: {stylizer.engine.describe()}{where}")
        if out_dir is not None and artefact is not None:
            label = "+".join(Path(name).stem for name in blend)
            target = out_dir / f"{label}-{args.model}{Path(artefact).suffix}"
            target.write_bytes(read_cached(artefact))  # without the cache's checksum: a plain .onnx / .plan
    return 0


def webcam(args: argparse.Namespace) -> int:
    from ..api import stylize_live
    from ..io.sinks import RecordSink, Window
    from ..io.sources import SyntheticSource, WebcamSource
    from ..io.video import check_writable
    from ..model.styles import DEFAULT_STYLE, builtin_styles, parse_blend
    from ..model.weights import read_base

    if (args.no_preview and not args.record and not args.stats_json and not args.duration
            and args.virtual_cam is None):
        raise OutputError("--no-preview needs --record, --virtual-cam, --stats-json or --duration, "
                          "or nothing would happen")
    record_path = Path(args.record) if args.record else None
    if record_path is not None:
        check_writable(record_path)
    window = None if args.no_preview else Window("rtstyle")  # no display: fail before opening the camera
    base_id = read_base(args.model).base_id
    styles = args.styles.split(",") if args.styles else builtin_styles(base_id)
    first = args.style or (next(iter(parse_blend(args.blend))) if args.blend else DEFAULT_STYLE)
    if first in styles:
        styles = styles[styles.index(first):] + styles[: styles.index(first)]
    else:
        styles = [first, *styles]
    if args.synthetic:
        source = SyntheticSource(*args.size, fps=args.fps)
    else:
        from ..io.cameras import resolve_camera

        source = WebcamSource(resolve_camera(args.camera), args.size, args.fps)
    record = RecordSink(record_path, source.size, source.fps) if record_path is not None else None
    if args.virtual_cam is not None:
        from ..io.sinks import TeeSink, VirtualCameraSink

        try:
            camera = VirtualCameraSink(source.size, source.fps, args.virtual_cam, args.virtual_cam_mirror)
        except BaseException:
            source.close()
            if record is not None:
                record.abort()
            raise
        print(f"virtual camera: {camera.device}", file=sys.stderr)
        record = TeeSink(record, camera) if record is not None else camera
    print(f"live: {source.size[0]}x{source.size[1]} @ {source.fps:g} fps, style {styles[0]}; q to quit",
          file=sys.stderr)
    result = stylize_live(source, args.model, styles, args.strength, _engine_config(args), args.smooth,
                          args.smooth_strength, record=record, window=window, preview=not args.no_preview,
                          duration=args.duration)
    stats = result.metrics
    latency = stats["latency_ms"]
    print(f"{stats['frames']} frames in {stats['seconds']:.1f} s: {stats['fps']:.1f} fps, latency p50 "
          f"{latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms, max {latency['max']:.0f} ms, "
          f"{stats['drops']} dropped")
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(stats, indent=2))
    if record_path is not None:
        print(f"recorded {record_path}")
    return 128 + result.signal if result.signal else 0  # stopped by SIGTERM/SIGHUP/Ctrl-C: say so


def train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..train.losses import PerceptualWeights
    from ..train.trainer import TrainConfig, style_report
    from ..train.trainer import train as run_training

    config = TrainConfig(
        style_dir=Path(args.style_dir), content_dir=Path(args.content_dir), out=Path(args.out), mode=args.mode,
        model=args.model, rank=args.rank, alpha=args.alpha, steps=args.steps, batch=args.batch, size=args.size,
        lr=args.lr, perceptual=PerceptualWeights(args.content_weight, args.style_weight, args.tv_weight,
                                                 args.contrastive_weight),
        pixel_loss=args.pixel_loss, feature_weight=args.feature_weight, vgg=args.vgg,
        vgg_weights=Path(args.vgg_weights) if args.vgg_weights else None, pool=args.pool,
        checkpoint_every=args.checkpoint_every, sample_every=args.sample_every, resume=args.resume,
        stop_after=args.stop_after,
        device=args.device, seed=args.seed)
    if args.report:
        rows = style_report(config.style_dir, config)
        for row in rows:
            flag = "  <- outlier" if row["outlier"] else ""
            print(f"{row['z']:6.2f}  {row['image']}{flag}")
        return 0
    bar = tqdm(total=config.steps, unit="step", dynamic_ncols=True, file=sys.stderr, disable=None)

    def progress(step: int, total: int, terms: dict[str, float], rate: float) -> None:
        bar.n = step
        bar.set_postfix({**{k: f"{v:.4f}" for k, v in terms.items()}, "img/s": f"{rate:.1f}"}, refresh=False)
        bar.refresh()

    try:
        result = run_training(config, progress)
    finally:
        bar.close()
    print(f"wrote {result.adapter} ({result.steps} steps, {result.seconds:.0f} s, {result.images_per_second:.1f} "
          f"images/s); summary in {result.summary}")
    return 0
