"""What each part of the flow smoother buys: the current one, and the same with one part taken out.

On 16 built-in styles (8 of each model: the calmest, the busiest and some between; the ones that
tools/steady_styles.py steadied as they were before, from tools/originals, so the smoother meets
its hardest input) and the clips of benchmarks/temporal.py, the per-frame stylizations (lean path) are smoothed by

* "flow": the current flow smoother at the default strength;
* "- fine flow": the same with DIS's `fast` preset as it is (one pyramid level coarser);
* "- matching warps": without trusting warps that match where the forward-backward check fails;
* "- soft threshold": the drift budget met by scaling every step by one factor instead;
* "- flow weight": the past's weight at the strength itself (0.7) instead of 1.25 x it;
* "flow-fast": the smoother before all four (loaded from git at temporal.PREVIOUS).

Reported as in temporal.py (Farneback flow for the metric): warp error ratio to per-frame, mean
and worst over styles and clips, drift, and the ratio of the calmest (fast dusk-oil) and busiest
(quality night-brush) style, and the smoother's time per frame at the benchmark size.

Run: python benchmarks/temporal_ablation.py   (about 6 min on 2 CPU cores)
Writes benchmarks/results/temporal_ablation.{json,md}.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from temporal import PREVIOUS, RESULTS, drift, load_frames, old_host_module, smooth, wearing_each

from rtstyle.config import SMOOTH_STRENGTH
from rtstyle.model.styles import StyleChoice
from rtstyle.temporal import host
from rtstyle.temporal.metrics import pair_flows, warping_error_from

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from teachers import original_path  # noqa: E402  (the busiest styles before they were steadied)

STYLES = {"fast": ["dusk-oil", "color-field", "comic-outline", "ink-wash", "paper-cutout", "stained-glass",
                   "night-brush", "mosaic"],
          "quality": ["dusk-oil", "fauve-red", "comic-outline", "stained-glass", "night-brush", "abstract-strokes",
                      "mosaic", "ink-wash"]}


def scaled_lerp(self, start, end, weight, out):
    """The drift budget as it was met before soft thresholding: every step scaled by one factor."""
    np.subtract(end, start, out=out)
    out *= weight
    if self.drift_budget is not None:
        stride = host.drift_stride(*out.shape[:2])
        drifted = float(np.abs(out[::stride, ::stride]).mean())
        if drifted > self.drift_budget:
            out *= np.float32(self.drift_budget / drifted)
    out += start
    return out


def unsteadied(model: str, style: str) -> StyleChoice:
    path = original_path(style, model)
    return StyleChoice({str(path) if path.is_file() else style: 1.0})


def variants(old) -> dict[str, Callable[[], object]]:
    def flow(**changes):
        def make():
            smoother = host.make_host_smoother("flow", SMOOTH_STRENGTH)
            if changes.get("preset"):
                smoother = host.HostFlow(SMOOTH_STRENGTH, preset=changes["preset"])
            if changes.get("weight"):
                smoother.weight = changes["weight"]
            if changes.get("scaled"):
                smoother._lerp = scaled_lerp.__get__(smoother)
            return smoother
        return make

    # "- matching warps" is the current smoother with host.MATCH_* turned off while it runs (main).
    return {"flow": flow(), "- fine flow": flow(preset="fast"), "- matching warps": flow(),
            "- soft threshold": flow(scaled=True), "- flow weight": flow(weight=SMOOTH_STRENGTH),
            "flow-fast": lambda: old.make_host_smoother("flow", SMOOTH_STRENGTH)}


def main() -> None:
    clips = load_frames(320, 10)
    flows = {name: pair_flows(frames, "farneback") for name, frames in clips.items()}
    stylized = {}
    for model, names in STYLES.items():
        for style, stylizer in zip(names, wearing_each(model, [unsteadied(model, n) for n in names])):
            for clip, frames in clips.items():
                stylized[(model, style, clip)] = stylizer(frames)
    report = {"clips": list(clips), "styles": STYLES, "strength": SMOOTH_STRENGTH, "previous": PREVIOUS, "rows": {}}
    match = (host.MATCH_LOW, host.MATCH_HIGH)
    for name, make in variants(old_host_module(PREVIOUS)).items():
        # Matching warps off: the ramp ends below 0, so no local difference earns trust.
        host.MATCH_LOW, host.MATCH_HIGH = (-2.0, -1.0) if name == "- matching warps" else match
        rows = []
        for (model, style, clip), per_frame in stylized.items():
            out, seconds = smooth(clips[clip], per_frame, make())
            ratio = warping_error_from(flows[clip], out) / warping_error_from(flows[clip], per_frame)
            rows.append({"model": model, "style": style, "clip": clip, "ratio": ratio,
                         "drift": drift(out, per_frame), "ms": 1000 * seconds})
        report["rows"][name] = rows
        print(name, json.dumps(summary(rows)), flush=True)
    host.MATCH_LOW, host.MATCH_HIGH = match
    (RESULTS / "temporal_ablation.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "temporal_ablation.md").write_text(markdown(report))
    print(markdown(report))


def summary(rows: list[dict]) -> dict:
    def style_mean(model: str, style: str) -> float:
        return float(np.mean([r["ratio"] for r in rows if (r["model"], r["style"]) == (model, style)]))

    return {"ratio": float(np.mean([r["ratio"] for r in rows])), "worst_ratio": float(max(r["ratio"] for r in rows)),
            "pairs_under_0.3": sum(r["ratio"] <= 0.3 for r in rows), "pairs": len(rows),
            "drift": float(np.mean([r["drift"] for r in rows])), "worst_drift": float(max(r["drift"] for r in rows)),
            "fast_dusk_oil": style_mean("fast", "dusk-oil"),
            "quality_night_brush": style_mean("quality", "night-brush"),
            "ms_per_frame": float(np.mean([r["ms"] for r in rows]))}


def markdown(report: dict) -> str:
    lines = [f"Flow smoother at strength {report['strength']}, one part taken out at a time; 16 styles x "
             f"{len(report['clips'])} clips ({', '.join(report['clips'])}), long side 320. ratio = warp error / "
             "per-frame warp error (Farneback flow on the inputs).", "",
             "| smoother | ratio | worst ratio | style-clip pairs <= 0.3 | drift | worst drift | fast dusk-oil | "
             "quality night-brush | ms/frame |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rows in report["rows"].items():
        s = summary(rows)
        lines.append(f"| {name} | {s['ratio']:.3f} | {s['worst_ratio']:.2f} | {s['pairs_under_0.3']}/{s['pairs']} | "
                     f"{s['drift']:.4f} | {s['worst_drift']:.4f} | {s['fast_dusk_oil']:.2f} | "
                     f"{s['quality_night_brush']:.2f} | {s['ms_per_frame']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
