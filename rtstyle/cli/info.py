"""Devices, runtimes and the engine cache."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    info = sub.add_parser("info", help="show devices, runtimes and cached engines")
    info.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
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

