"""Time to first frame: building an engine from a fused network, cold and with the engine cache warm.

For each model and backend: the time `create_engine` takes with an empty engine cache (ONNX:
export + session) and with the file it left there (ONNX: checksum + session, no export), then
the first 640x360 frame through the engine. Medians of --repeats rounds, cold and cached
alternated in one process.

Run: python benchmarks/engine_start.py    Writes benchmarks/results/engine_start_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rtstyle.backends.base import create_engine
from rtstyle.config import EngineConfig
from rtstyle.model.loader import fuse, load_base
from rtstyle.model.styles import StyleChoice
from rtstyle.runtime_info import runtime_info

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def timed_start(net, backend: str, frame: torch.Tensor) -> tuple[float, float]:
    """(ms to build the engine, ms for its first frame)."""
    start = time.perf_counter()
    engine = create_engine(net, EngineConfig(backend=backend, device="cpu", precision="fp32"))
    built = time.perf_counter()
    engine(frame)
    return 1e3 * (built - start), 1e3 * (time.perf_counter() - built)


def measure(model: str, backend: str, repeats: int, cache: Path) -> dict:
    base = load_base(model)
    net = fuse(base, StyleChoice().resolve(base.base_id))
    frame = torch.rand(1, 3, 360, 640)
    cold, cached = [], []
    for _ in range(repeats):
        shutil.rmtree(cache, ignore_errors=True)
        cold.append(timed_start(net, backend, frame))
        cached.append(timed_start(net, backend, frame))

    def median(samples: list[tuple[float, float]], i: int) -> float:
        return round(statistics.median(s[i] for s in samples), 1)

    return {"model": model, "backend": backend, "build_ms_cold": median(cold, 0), "build_ms_cached": median(cached, 0),
            "first_frame_ms_cold": median(cold, 1), "first_frame_ms_cached": median(cached, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="torch,jit,onnx")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(tempfile.mkdtemp(prefix="rtstyle-engines-"))
    os.environ["RTSTYLE_ENGINE_DIR"] = str(cache)
    rows = [measure(model, backend, args.repeats, cache)
            for model in ("quality", "fast") for backend in args.backends.split(",")]
    shutil.rmtree(cache, ignore_errors=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads"
    caption = (f"Engine start on {machine}: building the engine from a fused network with an empty and with a warm "
               f"engine cache, then its first 640x360 frame; medians of {args.repeats} rounds, ms.")
    lines = [caption, "", "| model | backend | build, cold | build, cached | first frame, cold | first frame, cached |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['backend']} | {r['build_ms_cold']} | {r['build_ms_cached']} | "
              f"{r['first_frame_ms_cold']} | {r['first_frame_ms_cached']} |" for r in rows]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine_start_cpu.json").write_text(json.dumps(
        {"machine": machine, "runtime": runtime_info(), "repeats": args.repeats, "rows": rows}, indent=2))
    (RESULTS / "engine_start_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
