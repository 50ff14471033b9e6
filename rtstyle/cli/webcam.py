"""A live camera (or a synthetic scene) in a preview window, a recording or a virtual camera."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import OutputError
from .common import (
    add_engine_options,
    add_faces_option,
    add_scale_option,
    add_smooth_options,
    add_style_options,
    check_stats_path,
    engine_config,
    frame_size,
    positive_float,
    style_options,
)
from .overwrite import add_overwrite_options, may_write


def add_parser(sub) -> None:
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
    add_overwrite_options(group)
    group.add_argument("--no-preview", action="store_true", help="no window (record or measure only)")
    group.add_argument("--virtual-cam", nargs="?", const="", metavar="DEVICE",
                       help="also send the stylized stream to a virtual camera for call apps and OBS (pyvirtualcam; "
                            "optional device, e.g. /dev/video10)")
    group.add_argument("--virtual-cam-mirror", action="store_true",
                       help="mirror the virtual camera's frames (call apps mirror only their own self-view)")
    group.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    group.add_argument("--stats-json", help="write fps, latency and drop statistics here on exit")


def run(args: argparse.Namespace) -> int:
    from ..api import stylize_live
    from ..io.files import check_writable
    from ..io.sinks import Window
    from ..live.outputs import open_live_outputs, open_live_source
    from ..live.styles import live_styles
    from ..model.styles import parse_blend
    from ..pipeline.runner import StreamConfig
    from ..pipeline.scale import AUTO, working_size

    if (args.no_preview and not args.record and not args.stats_json and not args.duration
            and args.virtual_cam is None):
        raise OutputError("--no-preview needs --record, --virtual-cam, --stats-json or --duration, "
                          "or nothing would happen")
    if args.stats_json:
        check_stats_path(Path(args.stats_json))
    record_path = Path(args.record) if args.record else None
    if record_path is not None:
        check_writable(record_path)
        if not may_write(record_path, args.overwrite, args.no_overwrite):
            return 0
    window = None if args.no_preview else Window("rtstyle", args.size)  # no display: fail before the camera
    options = style_options(args)
    first = options.style or (next(iter(parse_blend(options.blend))) if options.blend else None)
    styles = live_styles(options.model, args.styles.split(",") if args.styles else None, args.style_dir,
                         first).from_first()
    source = open_live_source(args.camera, args.size, args.fps, args.synthetic)
    record, virtual_camera = open_live_outputs(source, record_path, args.virtual_cam, args.virtual_cam_mirror)
    if virtual_camera is not None:
        print(f"virtual camera: {virtual_camera}", file=sys.stderr)
    auto = args.scale == AUTO
    fixed = 1.0 if auto else args.scale
    if auto:
        scaled = ", the scale fitted to it at the start"
    else:
        scaled = " (stylized at {}x{})".format(*working_size(*source.size, fixed)) if fixed < 1 else ""
    print(f"live: {source.size[0]}x{source.size[1]} @ {source.fps:g} fps{scaled}, {Path(options.model).stem} model, "
          f"style {styles[0]}; q to quit", file=sys.stderr)
    stream = StreamConfig(batch=1, live=True, scale=fixed, fit_scale=auto)
    result = stylize_live(source, options.model, styles, options.strength, engine_config(args, live=True), args.smooth,
                          args.smooth_strength, record=record, window=window, preview=not args.no_preview,
                          config=stream, duration=args.duration, preserve_color=options.preserve_color,
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

