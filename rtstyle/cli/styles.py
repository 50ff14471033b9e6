"""The built-in styles of a model."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    styles = sub.add_parser("styles", help="list the built-in styles")
    styles.add_argument("--model", default="quality", help="list the styles of this model (default: quality)")
    styles.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
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

