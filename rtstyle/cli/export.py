"""Build compiled engines into the engine cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import OutputError
from ..model.styles import StyleChoice
from .common import (
    add_engine_options,
    engine_config,
    strength,
    style_options,
)
from .overwrite import add_overwrite_options, may_write


def add_parser(sub) -> None:
    export = sub.add_parser("export", help="build and cache compiled engines for given styles",
                            description="Fuse each style into the model and build its engine into the engine cache.")
    export.add_argument("styles", nargs="+", help="style names or adapter files (a blend counts as one: a:0.5,b:0.5)")
    export.add_argument("--strength", type=strength, default=1.0)
    export.add_argument("-o", "--output-dir", help="also copy each exported ONNX graph here")
    add_overwrite_options(export)  # for the copies in --output-dir
    add_engine_options(export)


def run(args: argparse.Namespace) -> int:
    from ..api import load_stylizer
    from ..backends.cache import read_cached
    from ..model.styles import parse_blend

    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None and not out_dir.is_dir():
        raise OutputError(f"output folder does not exist: {out_dir}")
    model, engine = style_options(args).model, engine_config(args)
    for spec in args.styles:
        blend = parse_blend(spec) if ":" in spec else {spec: 1.0}
        stylizer = load_stylizer(model, StyleChoice(blend, args.strength), engine, lean=False)
        artefact = getattr(stylizer.engine, "path", None)
        where = f" -> {artefact}" if artefact else " (nothing to cache for this backend)"
        print(f"{spec}: {stylizer.engine.describe()}{where}")
        if out_dir is not None and artefact is not None:
            label = "+".join(Path(name).stem for name in blend)
            target = out_dir / f"{label}-{model}{Path(artefact).suffix}"
            if not may_write(target, args.overwrite, args.no_overwrite):
                continue
            standalone = getattr(stylizer.engine, "standalone", None)  # an ONNX graph takes its style in
            target.write_bytes(standalone() if standalone else read_cached(artefact))  # a plain .onnx / .plan
    return 0

