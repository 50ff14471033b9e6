"""A sample clip with audio, made and stylized: a first run with no files."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..config import ConvertConfig
from .common import (
    add_engine_options,
    add_smooth_options,
    add_style_options,
    engine_config,
    positive_int,
    style_options,
)
from .overwrite import add_overwrite_options, may_write
from .stylize import convert, report


def add_parser(sub) -> None:
    demo = sub.add_parser("demo", help="make a sample clip with audio and stylize it (no files needed)")
    demo.add_argument("-o", "--output", default="rtstyle-demo.mp4", help="default: rtstyle-demo.mp4")
    demo.add_argument("--seconds", type=positive_int, default=4)
    add_overwrite_options(demo)
    add_style_options(demo)
    add_engine_options(demo)
    add_smooth_options(demo.add_argument_group("smoothing"))


def run(args: argparse.Namespace) -> int:
    from ..io.synthetic import write_clip

    if not may_write(Path(args.output), args.overwrite, args.no_overwrite):
        return 0
    with tempfile.TemporaryDirectory(prefix="rtstyle-demo-") as folder:
        clip = write_clip(Path(folder) / "sample.mp4", seconds=args.seconds)
        config = ConvertConfig(smooth=args.smooth, smooth_strength=args.smooth_strength)
        result = convert(clip, Path(args.output), style_options(args), engine_config(args), config, quiet=False)
    return report(result, as_json=False)

