"""Merge the GPU session's runs into one summary: benchmarks/results/gpu_summary.{json,md} and gpu_fps.png.

The runs under benchmarks/results/gpu/runN/ are the raw outputs of `benchmarks/gpu_session.sh` (one
device call each; benchmarks/results/gpu/README.md says what code each ran). The code changed
between runs, so each row here says which run it comes from, and rows are taken from the run that
measured the code as it ships:
- run 1: first run; the compiled engine as it ships; training, the profile, 4K extremes.
- run 2: torch fp32/fp16 rows (TF32 now off for fp32), live latency, parity of the torch engines;
  its "compile" rows had channel padding, which it measured slower and which was then dropped
  (kept here as "compile+pad8", rejected); its "compile-unpadded" rows are the shipped engine.
- run 3: the shipped compiled engine against max-autotune, and a 900-frame end-to-end clip.

Run: python benchmarks/gpu_report.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
RUNS = RESULTS / "gpu"


def load(name: str) -> dict:
    return json.loads((RUNS / name / "gpu_summary.json").read_text())


def tagged(rows: list[dict], run: str, rename: dict[str, str] | None = None) -> list[dict]:
    out = []
    for row in rows:
        row = {**row, "run": run}
        if rename and row.get("engine") in rename:
            row["engine"] = rename[row["engine"]]
        out.append(row)
    return out


def merge() -> dict:
    run1, run2, run3, autotune = load("run1"), load("run2"), load("run3"), load("run3/autotune")
    padded = {"compile": "compile+pad8", "compile-unpadded": "compile"}
    engines = (tagged([r for r in run2["engines"] if r["engine"] == "torch"], "run2")
               + tagged(autotune["engines"], "run3")
               + tagged([r for r in run2["engines"] if r["engine"] == "compile"], "run2", padded))
    parity = (tagged([r for r in run2["parity"] if r["engine"] == "torch" and "finite" not in r], "run2")
              + tagged(autotune["parity"], "run3")
              + tagged([r for r in run1["parity"] if "finite" in r], "run1"))
    end_to_end = (tagged(run3["end_to_end"], "run3 (900-frame clip)")
                  + tagged(run2["end_to_end"], "run2 (300-frame clip, compile+pad8)"))
    live = tagged(run2["live"], "run2 (compile+pad8)")
    not_run = [
        "TensorRT: no TensorRT on the GPU machine (tensorrt-cu13-libs is not a wheel on PyPI)",
        "ONNX Runtime CUDA/TensorRT providers: no onnxruntime-gpu build for CUDA 13 there",
        "NVENC: PyAV's FFmpeg lists h264_nvenc, but it cannot open on an H100 (the GH100 has no NVENC "
        "engine): 'avcodec_open2(\"h264_nvenc\")' fails in every run",
        "the live path at batch > 1 and the ONNX/TensorRT engines' GPU tests (skipped for the reasons above)",
    ]
    return {"device": run2["device"], "torch": run2["torch"], "cuda": run2["cuda"], "cpu_cores": run2["cpu_cores"],
            "engines": engines, "end_to_end": end_to_end, "live": live, "parity": parity,
            "host_video": {**run3["host_video"], "nvdec_hwaccel_decode_rgb_fps": run3.get("hwaccel_decode_rgb_fps")},
            "av": run3["av"], "profile": run1["profile"], "training": run1["training"], "not_run": not_run,
            "runs": {"run1": "commit ad72d39", "run2": "commit 23ed1c0", "run3": "commit 224c902"}}


def markdown(summary: dict) -> str:
    lines = [f"GPU session on {summary['device']} (torch {summary['torch']}, CUDA {summary['cuda']}, "
             f"{summary['cpu_cores']} CPU cores); `python benchmarks/gpu_report.py` over benchmarks/results/gpu/.", "",
             "Model only (frames already on the GPU, CUDA-synchronised, warm-up excluded):", "",
             "| model | engine | precision | batch | size | fps | warm-up s | run |",
             "|---|---|---|---:|---|---:|---:|---|"]
    for r in summary["engines"]:
        lines.append(f"| {r['model']} | {r['engine']} | {r['precision']} | {r['batch']} | {r['width']}x{r['height']} | "
                     f"{r['fps']:.0f} | {r['warm_up_s']} | {r['run']} |")
    lines += ["", "Against eager fp32 (TF32 off) on 8 real photos at 1080p; levels = uint8 output levels:", "",
              "| model | engine | precision | max abs | p99.99 abs | mean abs | share > 1 level off | run |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for r in summary["parity"]:
        if "max_abs" in r:
            lines.append(f"| {r['model']} | {r['engine']} | {r['precision']} | {r['max_abs']:.4f} | "
                         f"{r.get('p99_99_abs', float('nan')):.4f} | {r['mean_abs']:.5f} | "
                         f"{100 * r.get('share_off_by_more_than_1_level', float('nan')):.3f}% | {r['run']} |")
    finite = [f"{r['model']}/{r['engine']}: {'all finite' if r['all_finite'] else r['finite']}"
              for r in summary["parity"] if "finite" in r]
    lines += ["", "fp16 at 3840x2160 on black, white, saturated and noise frames: " + "; ".join(finite) + ".", "",
              "End to end, 1080p H.264 file to file (PyAV decode, stylize, libx264 veryfast, audio copied):", "",
              "| model | smoothing | fps | capture ms | submit ms | GPU wait ms | encode ms | run |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in summary["end_to_end"]:
        st = r["stage_ms_per_frame"]
        lines.append(f"| {r['model']} | {r['smooth']} | {r['fps']:.1f} | {st.get('capture', float('nan')):.1f} | "
                     f"{st.get('stylize_submit', float('nan')):.1f} | {st.get('stylize_wait', float('nan')):.1f} | "
                     f"{st['sink']:.1f} | {r['run']} |")
    hv = summary["host_video"]
    lines += ["", f"Host alone at 1080p: decode to RGB {hv['decode_rgb_fps']:.0f} fps (NVDEC through FFmpeg's hwaccel "
              f"{hv['nvdec_hwaccel_decode_rgb_fps']:.0f} fps), libx264 veryfast "
              f"{hv['encode_libx264_veryfast_fps']:.0f} fps from RGB, "
              f"{hv['encode_libx264_veryfast_from_yuv420p_fps']:.0f} fps from yuv420p.", "",
              "Live, synthetic camera in real time, batch 1:", "",
              "| model | size | source fps | smoothing | output fps | p50 ms | p95 ms | max ms | drops | run |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in summary["live"]:
        lines.append(f"| {r['model']} | {r['width']}x{r['height']} | {r['source_fps']} | {r['smooth']} | "
                     f"{r['output_fps']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} | "
                     f"{r['drops']} | {r['run']} |")
    t = summary["training"]
    lines += ["", f"Training, {t['mode']} mode, {t['model']} model, batch {t['batch']}, {t['size']} px, "
              f"rank {t['rank']}: "
              f"{t['images_per_second']:.0f} images/s; the committed acceptance recipe (9000 steps, pool 2048) "
              f"estimated at {t['estimated_recipe_s']:.0f} s (an estimate: steps at the measured rate plus the "
              "pool time scaled from 256 to 2048).", "", "Not run: " + "; ".join(summary["not_run"]) + "."]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["engines"] if r["batch"] == 8]
    labels = [f"{r['model']}\n{r['engine']}\n{r['precision']}" for r in rows]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    bars = ax.bar(range(len(rows)), [r["fps"] for r in rows],
                  color=["#4c72b0" if r["model"] == "quality" else "#dd8452" for r in rows])
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("frames per second")
    ax.set_title(f"Model-only fps at 1920x1080, batch 8, {summary['device']}")
    for target, model in ((500, "quality"), (1000, "fast")):
        ax.axhline(target, ls="--", lw=0.8, color="#4c72b0" if model == "quality" else "#dd8452")
        ax.text(len(rows) - 0.5, target, f"{model} target {target}", fontsize=7, va="bottom", ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    summary = merge()
    (RESULTS / "gpu_summary.json").write_text(json.dumps(summary, indent=2))
    (RESULTS / "gpu_summary.md").write_text(markdown(summary))
    plot(summary, RESULTS / "gpu_fps.png")


if __name__ == "__main__":
    main()
