"""The cameras this machine has."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    cameras = sub.add_parser("cameras", help="list the cameras: index, name and the sizes they give")
    cameras.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
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

