"""Where a frame's time goes in the lean runtime on this CPU: ONNX Runtime's own profile, by operator.

The graph, weights, norms-as-inputs and session options are the lean path's (stylizers.factory._load_lean,
model/ort_session.py); ONNX Runtime's profiler times every node of `--runs` frames. Reported per
model: ms per frame by operator type, whether that operator used more than one thread, and the
convolutions' arithmetic (2 x output elements x weight elements) and rate. The convolutions are the
floor no rewrite of the glue around them removes; the live targets are set against it in the README.

Run: python benchmarks/cpu_profile.py [--size 640x480] [--runs 12] [--models fast quality]
Writes benchmarks/results/cpu_profile.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from rtstyle.io.synthetic import scene_frame
from rtstyle.model.spec import is_norm_key
from rtstyle.model.styles import StyleChoice
from rtstyle.model.templates import filled_template, styled_graph
from rtstyle.model.weights import fuse_style, read_base

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def profile(model: str, width: int, height: int, runs: int, folder: str) -> dict:
    base = read_base(model)
    fused = fuse_style(base, StyleChoice().resolve(base.base_id))
    _, weights = filled_template(base.base_id, {**fused.convs, **fused.norms})
    convs = {name: array for name, array in weights.items() if not is_norm_key(name)}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(folder) / model)
    values = [ort.OrtValue.ortvalue_from_numpy(array) for array in convs.values()]
    options.add_external_initializers(list(convs), values)
    session = ort.InferenceSession(styled_graph(base.base_id), options, providers=["CPUExecutionProvider"])
    frame = scene_frame(30, width, height).transpose(2, 0, 1)[None].astype(np.float32) / 255
    feeds = {"image": frame, **{k: np.ascontiguousarray(v, np.float32) for k, v in fused.norms.items()}}
    warm_up = 3  # ONNX Runtime plans its memory on the first runs: profiled, but left out below
    for _ in range(warm_up + runs):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    nodes = nodes[warm_up * len(nodes) // (warm_up + runs):]  # every run runs the same nodes
    per_op: dict[str, dict] = defaultdict(lambda: {"us": 0.0, "threaded": False, "flops": 0.0})
    for event in nodes:
        args = event["args"]
        entry = per_op[args["op_name"]]
        entry["us"] += event["dur"]
        # A kernel that split its work over the thread pool records the blocks it handed out.
        entry["threaded"] |= bool(args.get("thread_scheduling_stats", {}).get("main_thread", {}).get("block_size"))
        if args["op_name"] == "Conv":
            out = np.prod(next(iter(args["output_type_shape"][0].values())))
            weight = next(iter(args["input_type_shape"][1].values()))  # (out channels, in channels / groups, kh, kw)
            entry["flops"] += 2.0 * out * np.prod(weight[1:])
    total_us = sum(entry["us"] for entry in per_op.values())
    ops = [{"op": op, "ms_per_frame": round(entry["us"] / runs / 1000, 2), "share": round(entry["us"] / total_us, 3),
            "more_than_one_thread": entry["threaded"]}
           for op, entry in sorted(per_op.items(), key=lambda item: -item[1]["us"])]
    conv = per_op["Conv"]
    return {"model": model, "size": f"{width}x{height}", "runs": runs, "ops": ops,
            "total_ms_per_frame": round(total_us / runs / 1000, 1),
            "conv_gflop_per_frame": round(conv["flops"] / runs / 1e9, 2),
            "conv_gflops": round(conv["flops"] / (conv["us"] / 1e6) / 1e9, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=lambda t: tuple(map(int, t.split("x"))), default=(640, 480))
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--models", nargs="+", default=["fast", "quality"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [profile(model, *args.size, args.runs, folder) for model in args.models]
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine, "onnxruntime": ort.__version__, "threads": os.cpu_count(), "rows": rows}
    (RESULTS / "cpu_profile.json").write_text(json.dumps(report, indent=2))
    lines = [f"ONNX Runtime {ort.__version__} on {machine} (every core), the lean path's graph and options, batch 1, "
             f"its own profiler over {args.runs} frames after 3 unprofiled ones (`python benchmarks/cpu_profile.py`). "
             "Kernel time only: the session's own overhead between kernels is not in it.", ""]
    for row in rows:
        lines += [f"**{row['model']}, {row['size']}**: {row['total_ms_per_frame']} ms of kernels a frame; the "
                  f"convolutions do {row['conv_gflop_per_frame']} GFLOP at {row['conv_gflops']} GFLOP/s.", "",
                  "| operator | ms per frame | share | more than one thread |", "|---|---:|---:|---|"]
        lines += [f"| {op['op']} | {op['ms_per_frame']} | {op['share']:.0%} | "
                  f"{'yes' if op['more_than_one_thread'] else 'no'} |" for op in row["ops"]]
        lines.append("")
    (RESULTS / "cpu_profile.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
