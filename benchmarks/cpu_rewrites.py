"""The CPU graph rewrites (tools/onnx_rewrites.py) against the plain export, in one run.

For each built-in base with its default style's weights: the plain ONNX export of the network and
the committed, rewritten template, both under ONNX Runtime on the CPU (full graph optimisation, every
core), timed alternately per frame size; the median of the rounds is reported, with the largest
output difference between the two.

Run: python benchmarks/cpu_rewrites.py [--rounds 5] [--runs 8]
Writes benchmarks/results/cpu_rewrites.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from rtstyle.backends.onnx_export import export_onnx
from rtstyle.model.loader import load_base
from rtstyle.model.styles import StyleChoice
from rtstyle.model.templates import template_bytes
from rtstyle.model.weights import fuse_weights, read_base

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SIZES = [(360, 640), (480, 640), (720, 1280)]


def session(graph: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def ms_per_frame(sess: ort.InferenceSession, x: np.ndarray, runs: int) -> float:
    sess.run(None, {"image": x})
    start = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {"image": x})
    return (time.perf_counter() - start) / runs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=8, help="frames timed per round and graph")
    args = parser.parse_args()
    rows = []
    for model in ("fast", "quality"):
        weights = fuse_weights(read_base(model), StyleChoice().resolve(model))
        net = load_base(model).build()
        net.load_state_dict({key: torch.from_numpy(value) for key, value in weights.items()})
        plain, rewritten = session(export_onnx(net)), session(template_bytes(model, weights))
        for height, width in SIZES:
            x = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
            error = float(np.abs(plain.run(None, {"image": x})[0] - rewritten.run(None, {"image": x})[0]).max())
            times = {"plain": [], "rewritten": []}
            for _ in range(args.rounds):
                times["plain"].append(ms_per_frame(plain, x, args.runs))
                times["rewritten"].append(ms_per_frame(rewritten, x, args.runs))
            row = {"model": model, "size": f"{width}x{height}", "max_abs_difference": error,
                   **{f"{k}_ms": round(statistics.median(v), 1) for k, v in times.items()}}
            row["speedup"] = round(row["plain_ms"] / row["rewritten_ms"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    report = {"machine": machine, "onnxruntime": ort.__version__, "rounds": args.rounds, "runs": args.runs,
              "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cpu_rewrites.json").write_text(json.dumps(report, indent=2))
    lines = [f"ONNX Runtime {ort.__version__} on the CPU ({machine}, every core), batch 1, style starry-swirl: "
             "the plain export against the rewritten template (sub-pixel upsampling convs, space-to-depth last conv), "
             f"alternating, median of {args.rounds} rounds of {args.runs} frames "
             "(`python benchmarks/cpu_rewrites.py`).",
             "", "| model | size | plain ms/frame | rewritten ms/frame | speed-up | max output difference |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['size']} | {r['plain_ms']} | {r['rewritten_ms']} | {r['speedup']:.2f}x | "
              f"{r['max_abs_difference']:.1e} |" for r in rows]
    (RESULTS / "cpu_rewrites.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
