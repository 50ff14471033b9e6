"""Live pipeline latency: the synthetic camera through source -> stylizer -> sink, in live mode.

The synthetic source produces frames in real time at the given rate, like a camera; frames the
stylizer cannot keep up with are dropped (and counted), never queued. Reported per model, size
and rate: output fps, capture-to-output latency percentiles, drops, per-stage ms.

Run: python benchmarks/live.py [--device cpu|cuda] [--seconds 8]
Writes benchmarks/results/live_<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from rtstyle.api import stylize_live
from rtstyle.config import EngineConfig
from rtstyle.io.sources import SyntheticSource
from rtstyle.pipeline.runner import StreamConfig

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SCENARIOS = [(640, 480, 30), (1280, 720, 60)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["fast", "quality"])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--smooth", default="none")
    args = parser.parse_args()
    rows = []
    for model in args.models:
        for width, height, fps in SCENARIOS:
            source = SyntheticSource(width, height, fps=fps, frames=int(args.seconds * fps))
            result = stylize_live(source, model, ["starry-swirl"], engine=EngineConfig(backend=args.backend,
                                  device=args.device), smooth=args.smooth, preview=False,
                                  config=StreamConfig(batch=1, live=True))
            row = {"model": model, "size": f"{width}x{height}", "source_fps": fps, **result.metrics}
            rows.append(row)
            print(json.dumps(row), flush=True)
    cpu = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    device = torch.cuda.get_device_name() if args.device == "cuda" else cpu
    report = {"device": device, "backend": args.backend, "smooth": args.smooth, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = "cuda" if args.device == "cuda" else "cpu"
    (RESULTS / f"live_{kind}.json").write_text(json.dumps(report, indent=2))
    lines = [f"Live pipeline on {device}, backend {args.backend}, smoothing {args.smooth}; synthetic camera in real "
             "time, null sink.", "",
             "| model | size | source fps | output fps | latency p50 ms | p95 ms | max ms | dropped "
             "| stylize ms/frame |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lat = r["latency_ms"]
        lines.append(f"| {r['model']} | {r['size']} | {r['source_fps']} | {r['fps']:.1f} | {lat['p50']:.0f} | "
                     f"{lat['p95']:.0f} | {lat['max']:.0f} | {r['drops']} | "
                     f"{r['stage_ms_per_frame'].get('stylize', 0):.1f} |")
    (RESULTS / f"live_{kind}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
