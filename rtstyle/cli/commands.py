"""The CLI commands. Each takes the parsed arguments and returns an exit code; the terminal is theirs."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

from ..config import ConvertConfig, EngineConfig, file_parallel_frames
from ..errors import InputError, OutputError
from ..model.styles import StyleChoice
from ..pipeline.convert import ConvertResult
from .main import EXIT_INTERRUPTED


def _engine_config(args: argparse.Namespace, live: bool = False) -> EngineConfig:
    """Live streams compute one frame at a time (each frame waits least); files several (more fps)."""
    parallel = getattr(args, "parallel_frames", None) or (1 if live else file_parallel_frames())
    return EngineConfig(backend=args.backend, device=args.device, precision=args.precision,
                        autotune=getattr(args, "autotune", False), threads=getattr(args, "threads", None),
                        parallel_frames=parallel)


def _style_choice(args: argparse.Namespace) -> StyleChoice:
    return StyleChoice.parse(args.style, args.blend, args.strength, getattr(args, "preserve_color", False))


def _default_output(src: Path, choice: StyleChoice, scheduled: bool = False) -> Path:
    label = "scheduled" if scheduled else "+".join(Path(name).stem for name in choice.blend)
    return src.with_name(f"{src.stem}_{label}{src.suffix}")


def _load(args: argparse.Namespace, choice: StyleChoice):
    """The stylizer the arguments ask for: one style (or blend), or a style schedule."""
    from ..api import load_scheduled_stylizer, load_stylizer

    schedule = getattr(args, "style_schedule", None)
    if schedule:
        from ..pipeline.schedule import StyleSchedule

        return load_scheduled_stylizer(args.model, StyleSchedule.parse(schedule), args.strength,
                                       _engine_config(args), choice.preserve_color)
    return load_stylizer(args.model, choice, _engine_config(args))


def _convert(src: Path, dst: Path, args: argparse.Namespace, config: ConvertConfig, quiet: bool,
             choice: StyleChoice | None = None) -> ConvertResult:
    from ..pipeline.convert import check_paths, convert_file

    check_paths(src, dst)  # fail on bad paths before the model is built
    stylizer = _load(args, choice or _style_choice(args))
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
                         smooth_strength=args.smooth_strength, scale=args.scale, faces=args.faces)


def _is_batch(args: argparse.Namespace) -> bool:
    single = Path(args.input[0])
    out = args.output or ""
    return (len(args.input) > 1 or single.is_dir() or not single.exists() and any(c in args.input[0] for c in "*?[")
            or out.endswith(("/", "\\")) or bool(out) and Path(out).is_dir())


def _ray_config(args: argparse.Namespace):
    """--ray's RayConfig, or None. `--ray in.mp4` reads the input as the address: it goes back to the inputs."""
    if args.ray is None:
        return None
    from ..pipeline.cluster import RayConfig

    address = args.ray
    if address and Path(address).exists():
        args.input.insert(0, address)
        address = ""
    return RayConfig(address=address or None, log_to_driver=not (args.json or args.quiet))


def _frame_bar(quiet: bool):
    """One progress bar in frames: (bar, progress(done, total))."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="frame", dynamic_ncols=True, disable=quiet or None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, progress


def _convert_segmented(src: Path, dst: Path, args: argparse.Namespace, config: ConvertConfig, quiet: bool,
                       choice: StyleChoice, ray) -> ConvertResult:
    """--segment-seconds: the segments on Ray workers, or one after another here without --ray."""
    from ..io.images import is_image_path
    from ..pipeline.convert import check_paths

    if is_image_path(src):
        raise InputError("--segment-seconds splits a video; this input is an image")
    check_paths(src, dst)  # before a model is built or a cluster reached
    bar, progress = _frame_bar(quiet)
    try:
        if ray is not None:
            from ..pipeline.cluster import convert_segmented_on_ray

            with contextlib.redirect_stdout(sys.stderr):  # Ray prints its workers' errors on stdout: keep it ours
                return convert_segmented_on_ray(src, dst, args.model, choice, _engine_config(args), config,
                                                args.segment_seconds, ray, progress)
        from ..api import load_stylizer
        from ..pipeline.segments import convert_segmented

        stylizer = load_stylizer(args.model, choice, _engine_config(args))
        return convert_segmented(src, dst, stylizer, config, args.segment_seconds, progress)
    finally:
        bar.close()


def stylize(args: argparse.Namespace) -> int:
    ray = _ray_config(args)
    if not args.input:
        raise InputError("nothing to stylize: give a video or image, or several, folders or globs with -o OUTDIR/")
    if getattr(args, "style_schedule", None) and (ray is not None or args.segment_seconds):
        raise InputError("--style-schedule runs in one process: leave out --ray and --segment-seconds")
    if _is_batch(args):
        if args.segment_seconds:
            raise InputError("--segment-seconds splits one video; give one input file")
        return stylize_batch(args, ray)
    if ray is not None and not args.segment_seconds:
        raise InputError("--ray runs a batch (several inputs, or -o OUTDIR/) or the segments of one video "
                         "(--segment-seconds N)")
    src = Path(args.input[0])
    choice = _style_choice(args)
    dst = Path(args.output) if args.output else _default_output(src, choice, bool(args.style_schedule))
    if dst.exists() and not args.overwrite:
        if args.no_overwrite:
            print(f"rtstyle: {dst} exists; left as it is (-n)", file=sys.stderr)
            return 0
        if not _confirm_overwrite(dst):
            raise OutputError(f"{dst} exists; -y replaces it, -n leaves it")
    if args.segment_seconds:
        result = _convert_segmented(src, dst, args, _config(args), args.quiet or args.json, choice, ray)
    else:
        result = _convert(src, dst, args, _config(args), quiet=args.quiet or args.json, choice=choice)
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(result.metrics or {"frames": result.frames,
                                                                        "seconds": result.seconds}, indent=2))
    return _report(result, args.json)


def stylize_batch(args: argparse.Namespace, ray=None) -> int:
    """Many files, one stylizer (per Ray worker with --ray), one progress bar; a failed file is one line and the
    batch goes on."""
    from ..pipeline.batch import expand, run_batch

    if not args.output:
        raise OutputError("a batch needs -o OUTDIR/ for its outputs")
    out_dir = Path(args.output)
    jobs = expand(args.input, out_dir)
    if not jobs:
        raise InputError("no video or image files in the inputs")
    out_dir.mkdir(parents=True, exist_ok=True)
    choice = _style_choice(args)
    quiet = args.quiet or args.json
    if ray is None:
        stylizer = _load(args, choice)
        if not quiet:
            print(f"{len(jobs)} files -> {out_dir}  [{stylizer.description}]", file=sys.stderr)
    elif not quiet:
        print(f"{len(jobs)} files -> {out_dir}  [Ray: {ray.address or 'local'}]", file=sys.stderr)
    bar, progress = _frame_bar(quiet)
    try:
        if ray is None:
            batch = run_batch(jobs, stylizer, _config(args), args.skip_existing, args.overwrite, progress)
        else:
            from ..pipeline.cluster import run_ray_batch

            with contextlib.redirect_stdout(sys.stderr):  # Ray prints its workers' errors on stdout: keep it ours
                batch = run_ray_batch(jobs, args.model, choice, _engine_config(args), _config(args), ray,
                                      args.skip_existing, args.overwrite, progress)
    finally:
        bar.close()
    for result in batch.results:
        if result.status == "failed" and not args.json:
            print(f"rtstyle: failed: {result.error}", file=sys.stderr)
    counts = batch.counts()
    if args.json:
        print(json.dumps(batch.summary(), indent=2))
    else:
        print(f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
    if batch.interrupted:
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


def style_from_image(args: argparse.Namespace) -> int:
    from ..model.arbitrary import read_style_picture, style_predictor
    from ..model.styles import parse_blend

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise OutputError(f"a style file ends in .safetensors: {out}")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: no folder {out.parent}")
    blend = parse_blend(args.picture) if "," in args.picture or ":" in Path(args.picture).name else {args.picture: 1}
    choice = StyleChoice(blend, args.strength)
    predictor = style_predictor()
    vector = predictor.neutral.copy()
    for picture, weight in choice.weights().items():  # blends and strength are sums of style vectors
        vector += weight * (predictor.vector(read_style_picture(picture)) - predictor.neutral)
    name = out.name.removesuffix(".safetensors")
    adapter = predictor.adapter(vector, name, {"pictures": {Path(p).name: w for p, w in choice.weights().items()}})
    try:
        adapter.save(out)
    except OSError as exc:
        raise OutputError(f"cannot write {out} ({exc.strerror or exc})") from exc
    print(f"{out}: the style of {', '.join(Path(p).name for p in blend)}; use it with --model arbitrary --style {out}",
          file=sys.stderr)
    return 0


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
            standalone = getattr(stylizer.engine, "standalone", None)  # an ONNX graph takes its style in
            target.write_bytes(standalone() if standalone else read_cached(artefact))  # a plain .onnx / .plan
    return 0


def webcam(args: argparse.Namespace) -> int:
    from ..api import stylize_live
    from ..io.sinks import RecordSink, Window
    from ..io.sources import SyntheticSource, WebcamSource
    from ..io.video import check_writable
    from ..model.styles import DEFAULT_STYLE, builtin_styles, parse_blend
    from ..model.weights import read_base
    from ..pipeline.runner import StreamConfig
    from ..pipeline.scale import AUTO, working_size

    if (args.no_preview and not args.record and not args.stats_json and not args.duration
            and args.virtual_cam is None):
        raise OutputError("--no-preview needs --record, --virtual-cam, --stats-json or --duration, "
                          "or nothing would happen")
    record_path = Path(args.record) if args.record else None
    if record_path is not None:
        check_writable(record_path)
    window = None if args.no_preview else Window("rtstyle", args.size)  # no display: fail before the camera
    base_id = read_base(args.model).base_id
    if args.style_dir:
        from ..model.arbitrary import picture_adapter, pictures_in

        styles = pictures_in(args.style_dir)
        for picture in styles:  # every picture read now: a bad one fails here, and n/p never waits for one
            picture_adapter(picture)
    else:
        styles = args.styles.split(",") if args.styles else builtin_styles(base_id)
        _check_styles(args.model, styles, base_id)
    default = styles[0] if args.style_dir else DEFAULT_STYLE
    first = args.style or (next(iter(parse_blend(args.blend))) if args.blend else default)
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
    auto = args.scale == AUTO
    fixed = 1.0 if auto else args.scale
    if auto:
        scaled = ", the scale fitted to it at the start"
    else:
        scaled = " (stylized at {}x{})".format(*working_size(*source.size, fixed)) if fixed < 1 else ""
    print(f"live: {source.size[0]}x{source.size[1]} @ {source.fps:g} fps{scaled}, {Path(args.model).stem} model, "
          f"style {styles[0]}; q to quit", file=sys.stderr)
    stream = StreamConfig(batch=1, live=True, scale=fixed, fit_scale=auto)
    result = stylize_live(source, args.model, styles, args.strength, _engine_config(args, live=True), args.smooth,
                          args.smooth_strength, record=record, window=window, preview=not args.no_preview,
                          config=stream, duration=args.duration, preserve_color=args.preserve_color,
                          faces=args.faces)
    stats = result.metrics
    latency = stats["latency_ms"]
    fitted = " at --scale {:g} (auto: stylized at {}x{})".format(
        stats["scale"], *working_size(*source.size, stats["scale"])) if auto else ""
    print(f"{stats['frames']} frames in {stats['seconds']:.1f} s{fitted}: {stats['fps']:.1f} fps, latency p50 "
          f"{latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms, max {latency['max']:.0f} ms, "
          f"{stats['drops']} dropped")
    hint = None if auto else scale_hint(stats["fps"], source.fps, fixed)
    if hint:
        print(hint, file=sys.stderr)
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(stats, indent=2))
    if record_path is not None:
        print(f"recorded {record_path}")
    return 128 + result.signal if result.signal else 0  # stopped by SIGTERM/SIGHUP/Ctrl-C: say so


def _check_styles(model: str, styles: list[str], base_id: str) -> None:
    """Read and fuse every style that is not built in (adapter files, pictures), so a typo or a broken file
    is one error line now rather than a style the live list leaves out when n reaches it."""
    from ..api import fused_style
    from ..model.styles import builtin_styles

    builtin = set(builtin_styles(base_id))
    for name in styles:
        if name not in builtin:
            fused_style(model, StyleChoice({name: 1.0}))


def scale_hint(fps: float, source_fps: float, scale: float) -> str | None:
    """A line that suggests a smaller --scale when the engine kept under 80% of the camera's frames."""
    from ..pipeline.scale import FRAME_SHARE, LEAST_SCALE, scale_to_fit

    kept = fps / source_fps
    if kept >= 0.8 or scale <= LEAST_SCALE:
        return None
    # Each frame took about 1 / fps; a scale that keeps up gives it FRAME_SHARE of the camera's interval.
    suggested = scale_to_fit(scale, FRAME_SHARE * kept)
    return (f"the engine kept {fps:.0f} of the camera's {source_fps:g} frames a second; to keep up, try "
            f"--scale {suggested:g} or --scale auto (fewer pixels through the network, larger strokes)")


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
        pixel_loss=args.pixel_loss, feature_weight=args.feature_weight, face_weight=args.face_weight, vgg=args.vgg,
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


def serve(args: argparse.Namespace) -> int:
    import secrets

    from ..serve.server import ServeConfig, is_loopback, serve_forever

    token = args.token
    if not is_loopback(args.host):
        print(f"rtstyle: warning: listening on {args.host}: whoever reaches port {args.port} can use this "
              "machine's engine; every request needs the token", file=sys.stderr)
        token = token or secrets.token_urlsafe(16)
        if not args.cert_file:
            print("rtstyle: warning: browsers give a camera only to https pages and localhost: add --cert-file and "
                  "--key-file, or use an SSH tunnel (ssh -L 8080:localhost:8080 this-machine)", file=sys.stderr)
    if args.style_dir:
        from ..model.arbitrary import pictures_in

        styles = tuple(pictures_in(args.style_dir))
    else:
        styles = tuple(args.styles.split(",")) if args.styles else ()
    config = ServeConfig(model=args.model, styles=styles, style=args.style, strength=args.strength,
                         smooth=args.smooth, smooth_strength=args.smooth_strength, scale=args.scale, faces=args.faces,
                         engine=_engine_config(args, live=True), host=args.host, port=args.port, token=token,
                         max_viewers=args.max_viewers, cert_file=args.cert_file, key_file=args.key_file)

    def ready(url: str) -> None:
        print(f"rtstyle serve: open {url}  (Ctrl-C to stop)", file=sys.stderr, flush=True)

    try:
        serve_forever(config, ready)
    except KeyboardInterrupt:
        print("rtstyle serve: stopped", file=sys.stderr)
    return 0
