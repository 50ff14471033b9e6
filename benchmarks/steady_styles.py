"""Do the steadied styles (tools/steady_styles.py) pay: how much steadier, how far from the original?

For each built-in style that was steadied for video, against the style as converted (kept in
tools/originals), on the lean path (ONNX Runtime, CPU):

* distance to the original style on held-out photos (../shared/data/content, unseen in training):
  mean |difference| in 0..1 and PSNR, and for scale the distance of the fast model's version of the
  same style (refined against the quality model: benchmarks/styles_vs_teacher.py);
* per-frame warp error (no smoother) on the clips of benchmarks/temporal.py (Farneback flow on the
  inputs, as there), and with the default flow smoother: ratio to per-frame and drift.

Run: python benchmarks/steady_styles.py   (about 2 min on 2 CPU cores)
Writes benchmarks/results/steady_styles.{json,md} and steady_styles.jpg.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from temporal import DATA, RESULTS, drift, load_frames, smooth

from rtstyle.api import load_stylizer
from rtstyle.config import SMOOTH_STRENGTH, EngineConfig
from rtstyle.model.styles import StyleChoice, builtin_styles, load_style
from rtstyle.temporal.host import make_host_smoother
from rtstyle.temporal.metrics import pair_flows, warping_error_from

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from teachers import original_path  # noqa: E402  (where the converted styles are kept)

PHOTOS = ("kodim01", "kodim08", "kodim15", "kodim16", "chelsea", "coffee")


def stylizer(model: str, style: str):
    return load_stylizer(model, StyleChoice({style: 1.0}), EngineConfig(backend="onnx", device="cpu"))


def distance(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """Mean |a - b| in 0..1 and mean PSNR (dB) over pairs of uint8 pictures."""
    diffs = [x.astype(np.float32) - y.astype(np.float32) for x, y in zip(a, b)]
    mean_abs = float(np.mean([np.abs(d).mean() for d in diffs]) / 255)
    psnr = float(np.mean([10 * np.log10(255**2 / max(float((d**2).mean()), 1e-9)) for d in diffs]))
    return mean_abs, psnr


def steadiness(run, clips: dict, flows: dict) -> dict:
    per_frame, ratios, drifts = [], [], []
    for name, frames in clips.items():
        styled = run(frames)
        error = warping_error_from(flows[name], styled)
        out, _ = smooth(frames, styled, make_host_smoother("flow", SMOOTH_STRENGTH))
        per_frame.append(error)
        ratios.append(warping_error_from(flows[name], out) / error)
        drifts.append(drift(out, styled))
    return {"per_frame_warp_error": float(np.mean(per_frame)), "flow_ratio": float(np.mean(ratios)),
            "flow_worst_ratio": float(np.max(ratios)), "flow_worst_drift": float(np.max(drifts))}


def main() -> None:
    photos = [np.asarray(Image.open(DATA / "content" / f"{n}.png").convert("RGB").resize((384, 256)))
              for n in PHOTOS]
    clips = load_frames(320, 10)
    flows = {name: pair_flows(frames, "farneback") for name, frames in clips.items()}
    rows, sheet = [], []
    for model in ("quality", "fast"):
        for name in builtin_styles(model):
            if "steadied_from" not in load_style(name, model).provenance:
                continue
            runs = {"original": stylizer(model, str(original_path(name, model))), "steady": stylizer(model, name)}
            pictures = {kind: run(photos) for kind, run in runs.items()}
            fast_version = stylizer("fast", name)(photos) if model == "quality" else None
            row = {"model": model, "style": name,
                   **{kind: steadiness(run, clips, flows) for kind, run in runs.items()}}
            row["distance"], row["psnr"] = distance(pictures["steady"], pictures["original"])
            if fast_version is not None:
                row["fast_model_distance"], row["fast_model_psnr"] = distance(fast_version, pictures["original"])
            steadier = row["steady"]["per_frame_warp_error"] / row["original"]["per_frame_warp_error"]
            row["per_frame_change"] = steadier - 1
            rows.append(row)
            sheet.append(np.concatenate([photos[2], pictures["original"][2], pictures["steady"][2]], axis=1))
            print(json.dumps(row), flush=True)
    report = {"photos": list(PHOTOS), "clips": list(clips), "strength": SMOOTH_STRENGTH, "rows": rows}
    (RESULTS / "steady_styles.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "steady_styles.md").write_text(markdown(report))
    if sheet:
        Image.fromarray(np.concatenate(sheet, axis=0)).save(RESULTS / "steady_styles.jpg", quality=90)
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = ["Per steadied style, as converted (original) and as shipped (steady): per-frame warp error "
             "(no smoother; mean over the clips "
             f"{', '.join(report['clips'])}), then with `--smooth flow` at {report['strength']}: ratio to "
             "per-frame (mean, worst clip) and worst drift; distance of the steady style to the original on held-out "
             "photos (mean |difference| in 0..1, PSNR), beside the fast model's version of the same style.", "",
             "| model | style | per-frame warp: original | steady | change | flow: original ratio (worst) / drift "
             "| steady | steady vs original | fast model vs original |", "|---|---|---:|---:|---:|---|---|---:|---:|"]
    for row in report["rows"]:
        o, s = row["original"], row["steady"]
        fast = (f"{row['fast_model_distance']:.3f} ({row['fast_model_psnr']:.1f} dB)"
                if "fast_model_distance" in row else "")
        lines.append(f"| {row['model']} | {row['style']} | {o['per_frame_warp_error']:.4f} | "
                     f"{s['per_frame_warp_error']:.4f} | {100 * row['per_frame_change']:+.0f} % | "
                     f"{o['flow_ratio']:.2f} ({o['flow_worst_ratio']:.2f}) / {o['flow_worst_drift']:.3f} | "
                     f"{s['flow_ratio']:.2f} ({s['flow_worst_ratio']:.2f}) / {s['flow_worst_drift']:.3f} | "
                     f"{row['distance']:.3f} ({row['psnr']:.1f} dB) | {fast} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
