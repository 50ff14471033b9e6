"""The default flow smoother on every built-in style at the clips' own resolution.

benchmarks/temporal.py runs at a long side of 320 (every smoother, many strengths). Here the same
clips run at their own size (long side up to 1024, never enlarged: sintel 1024x436, the video
640x360, the photo clips 500x500), with the default smoother only, because the networks paint
texture of a fixed size in pixels: at full size the same style flickers more against the same drift
budget. Warp error is measured as there (Farneback flow on the inputs) and, for comparison, with
DIS (`medium`) as the metric's flow.

Run: python benchmarks/temporal_native.py   (about 10 min on 2 CPU cores)
Writes benchmarks/results/temporal_native.{json,md}.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
from temporal import RESULTS, drift, load_frames, smooth, wearing_each

from rtstyle.config import SMOOTH_STRENGTH
from rtstyle.model.styles import StyleChoice, builtin_styles
from rtstyle.temporal.host import make_host_smoother
from rtstyle.temporal.metrics import pair_flows, warping_error_from

SIDE, FRAMES = 1024, 10


def main() -> None:
    clips = load_frames(SIDE, FRAMES)
    metrics = {method: {name: pair_flows(frames, method) for name, frames in clips.items()}
               for method in ("farneback", "dis")}
    rows = []
    for model in ("fast", "quality"):
        names = builtin_styles(model)
        for style, stylizer in zip(names, wearing_each(model, [StyleChoice({n: 1.0}) for n in names])):
            for clip, frames in clips.items():
                per_frame = stylizer(frames)
                out, seconds = smooth(frames, per_frame, make_host_smoother("flow", SMOOTH_STRENGTH))
                row = {"model": model, "style": style, "clip": clip, "size": list(frames[0].shape[1::-1]),
                       "drift": drift(out, per_frame), "ms_per_frame": 1000 * seconds}
                for method, flows in metrics.items():
                    row[f"per_frame_{method}"] = warping_error_from(flows[clip], per_frame)
                    row[f"ratio_{method}"] = warping_error_from(flows[clip], out) / row[f"per_frame_{method}"]
                rows.append(row)
            print(json.dumps({"model": model, "style": style, "worst_ratio": max(
                r["ratio_farneback"] for r in rows if (r["model"], r["style"]) == (model, style))}), flush=True)
    report = {"side": SIDE, "frames": FRAMES, "strength": SMOOTH_STRENGTH, "clips": list(clips),
              "sizes": {name: list(frames[0].shape[1::-1]) for name, frames in clips.items()}, "rows": rows}
    report["summary"] = {method: summary(rows, method) for method in metrics}
    (RESULTS / "temporal_native.json").write_text(json.dumps(report, separators=(",", ":")))
    (RESULTS / "temporal_native.md").write_text(markdown(report))
    print(markdown(report))


def by_style(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    styles = defaultdict(list)
    for row in rows:
        styles[(row["model"], row["style"])].append(row)
    return styles


def summary(rows: list[dict], method: str) -> dict:
    key = f"ratio_{method}"
    styles = by_style(rows)
    return {"ratio": float(np.mean([r[key] for r in rows])), "worst_ratio": float(max(r[key] for r in rows)),
            "drift": float(np.mean([r["drift"] for r in rows])), "worst_drift": float(max(r["drift"] for r in rows)),
            "styles": len(styles),
            "meeting_both_every_clip": sum(all(r[key] <= 0.3 and r["drift"] < 0.03 for r in v)
                                           for v in styles.values()),
            "meeting_both_clip_means": sum(bool(np.mean([r[key] for r in v]) <= 0.3
                                                and np.mean([r["drift"] for r in v]) < 0.03) for v in styles.values()),
            "pairs_over_0.3": sum(r[key] > 0.3 for r in rows), "pairs": len(rows)}


def markdown(report: dict) -> str:
    sizes = ", ".join(f"{name} {w}x{h}" for name, (w, h) in report["sizes"].items())
    lines = [f"Default flow smoother (strength {report['strength']}) on every built-in style at the clips' own size "
             f"({sizes}; {report['frames']} frames each). ratio = warp error / per-frame warp error, with the "
             "metric's flow from Farneback (as in temporal.md) or DIS medium; drift = mean |output - per-frame| in "
             "0..1. Targets: ratio <= 0.3 at drift < 0.03.", "",
             "| metric flow | ratio | worst ratio | drift | worst drift | style-clip pairs over 0.3 | "
             "styles meeting both on every clip | as clip means |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, s in report["summary"].items():
        lines.append(f"| {method} | {s['ratio']:.3f} | {s['worst_ratio']:.2f} | {s['drift']:.4f} | "
                     f"{s['worst_drift']:.4f} | {s['pairs_over_0.3']}/{s['pairs']} | "
                     f"{s['meeting_both_every_clip']}/{s['styles']} | {s['meeting_both_clip_means']}/{s['styles']} |")
    lines += ["", "Per style (Farneback metric): ratio mean over clips (worst clip), worst drift; **bold**: both "
              "targets on every clip.", "", "| model | style | per-frame warp | flow ratio (worst) / drift | "
              "with DIS as the metric |", "|---|---|---:|---|---|"]
    for (model, style), v in by_style(report["rows"]).items():
        cells = []
        for method in ("farneback", "dis"):
            ratios = [r[f"ratio_{method}"] for r in v]
            text = f"{np.mean(ratios):.2f} ({max(ratios):.2f}) / {max(r['drift'] for r in v):.3f}"
            met = all(r[f"ratio_{method}"] <= 0.3 and r["drift"] < 0.03 for r in v)
            cells.append(f"**{text}**" if met else text)
        lines.append(f"| {model} | {style} | {np.mean([r['per_frame_farneback'] for r in v]):.4f} | "
                     f"{cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
