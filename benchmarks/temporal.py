"""Temporal consistency: warping error of each smoother against per-frame stylization.

For each sequence (../shared/data/frames/* and the first frames of ../shared/data/video/*), every
frame is stylized on its own, then each smoother runs over the sequence. Reported per smoother
and strength: the warping error (flow from the inputs, occlusion-masked; Lai et al. 2018), its
change against per-frame stylization, and the mean absolute difference to the per-frame
stylization (0..1 pixels), which exposes smoothing that only blurs or freezes the picture. The
input's own warping error is the floor set by flow error.

Run: python benchmarks/temporal.py   (CPU, a few minutes)
Writes benchmarks/results/temporal.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtstyle.api import load_stylizer
from rtstyle.config import EngineConfig
from rtstyle.io.video import VideoReader
from rtstyle.model.styles import StyleChoice
from rtstyle.temporal.metrics import warping_error
from rtstyle.temporal.smoothers import make_smoother

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SETTINGS = [("none", 0.0), ("ema", 0.5), ("ema", 0.8), ("adaptive", 0.5), ("adaptive", 0.8), ("flow", 0.5),
            ("flow", 0.7), ("flow", 0.85)]


def sequences(video_frames: int) -> dict[str, list[np.ndarray]]:
    found = {}
    for folder in sorted((DATA / "frames").iterdir()):
        paths = sorted(folder.glob("frame_*.png"))
        if len(paths) >= 2:
            found[folder.name] = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    for clip in sorted((DATA / "video").glob("*.mp4")):
        with VideoReader(clip) as reader:
            found[clip.stem] = [f.image for _, f in zip(range(video_frames), reader)]
    return found


def smooth(frames: list[np.ndarray], stylized: list[np.ndarray], kind: str, strength: float) -> list[np.ndarray]:
    smoother = make_smoother(kind, strength)
    out = []
    for content, frame in zip(frames, stylized):
        x = torch.from_numpy(frame).permute(2, 0, 1).float().div(255)
        y = smoother(content, x)
        out.append((y.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="quality")
    parser.add_argument("--styles", nargs="+", default=["starry-swirl", "mosaic"])
    parser.add_argument("--video-frames", type=int, default=24)
    args = parser.parse_args()
    rows = []
    data = sequences(args.video_frames)
    for style in args.styles:
        stylizer = load_stylizer(args.model, StyleChoice({style: 1.0}), EngineConfig(device="cpu"))
        for name, frames in data.items():
            per_frame = [stylizer([f])[0] for f in frames]
            floor = warping_error(frames, frames)
            base = None
            for kind, strength in SETTINGS:
                out = smooth(frames, per_frame, kind, strength)
                error = warping_error(frames, out)
                base = error if kind == "none" else base
                mad = float(np.mean([np.abs(a.astype(np.float32) - b) for a, b in zip(out, per_frame)]) / 255)
                row = {"style": style, "sequence": name, "frames": len(frames), "smoother": kind,
                       "strength": strength, "warping_error": error, "change": error / base - 1,
                       "mad_to_per_frame": mad, "input_warping_error": floor}
                rows.append(row)
                print(json.dumps(row), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"model": args.model, "styles": args.styles, "rows": rows, "summary": summarise(rows)}
    (RESULTS / "temporal.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "temporal.md").write_text(markdown(report))
    plot(report, RESULTS / "temporal.png")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean over styles and sequences for each smoother setting."""
    out = []
    for kind, strength in SETTINGS:
        chosen = [r for r in rows if r["smoother"] == kind and r["strength"] == strength]
        out.append({"smoother": kind, "strength": strength,
                    "warping_error": float(np.mean([r["warping_error"] for r in chosen])),
                    "change": float(np.mean([r["change"] for r in chosen])),
                    "worst_change": float(np.max([r["change"] for r in chosen])),
                    "mad_to_per_frame": float(np.mean([r["mad_to_per_frame"] for r in chosen])),
                    "worst_mad": float(np.max([r["mad_to_per_frame"] for r in chosen]))})
    return out


def markdown(report: dict) -> str:
    sequences_ = sorted({r["sequence"] for r in report["rows"]})
    lines = [f"Model {report['model']}, styles {', '.join(report['styles'])}; sequences {', '.join(sequences_)}. "
             "Warping error (lower is steadier), its change against per-frame stylization, and the mean "
             "absolute difference to per-frame stylization (pixels 0..1; how far smoothing moves the picture). "
             "Means over styles and sequences; 'worst' is the weakest sequence.", "",
             "| smoother | strength | warping error | change | worst change | MAD to per-frame | worst MAD |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in report["summary"]:
        lines.append(f"| {s['smoother']} | {s['strength']:.2f} | {s['warping_error']:.4f} | {100 * s['change']:+.0f}% "
                     f"| {100 * s['worst_change']:+.0f}% | {s['mad_to_per_frame']:.3f} | {s['worst_mad']:.3f} |")
    floors = {r["sequence"]: r["input_warping_error"] for r in report["rows"]}
    lines += ["", "Input's own warping error (flow-error floor): "
              + ", ".join(f"{k} {v:.4f}" for k, v in sorted(floors.items()))]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for s in report["summary"]:
        ax.scatter(s["mad_to_per_frame"], s["warping_error"], label=f"{s['smoother']} {s['strength']:.2f}")
    ax.axvline(0.05, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("mean abs difference to per-frame stylization")
    ax.set_ylabel("warping error")
    ax.set_title("Smoothers: steadiness vs faithfulness")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
