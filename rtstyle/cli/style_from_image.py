"""A picture's style saved as a style file of the arbitrary model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import OutputError
from ..model.styles import StyleChoice
from .common import (
    strength,
)
from .overwrite import add_overwrite_options, may_write


def add_parser(sub) -> None:
    from_image = sub.add_parser("style-from-image", help="save a picture's style as a style file for --style",
                                description="Make a style file (an adapter of the arbitrary model) from a picture "
                                            "or a blend of pictures; `--style FILE` loads it like a built-in style.")
    from_image.add_argument("picture", help="the picture, or a blend: a.jpg:0.6,b.jpg:0.4")
    from_image.add_argument("-o", "--output", required=True, help="style file to write (NAME.safetensors)")
    from_image.add_argument("--strength", type=strength, default=1.0, help="bake this strength in (default: 1)")
    add_overwrite_options(from_image)


def run(args: argparse.Namespace) -> int:
    from ..model.arbitrary import read_style_picture, style_predictor
    from ..model.styles import parse_blend

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise OutputError(f"a style file ends in .safetensors: {out}")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: no folder {out.parent}")
    if not may_write(out, args.overwrite, args.no_overwrite):
        return 0
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

