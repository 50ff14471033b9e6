"""Warp error against the true motion: which flow size the smoother needs at full size.

benchmarks/temporal.py and temporal_native.py measure flicker along an estimated flow (Farneback or
DIS on the inputs), and at full size the two estimators disagree: 37 against 52 of 52 styles meet the
target. Here the metric's flow is the truth: ../shared/data's Sintel pair (alley_1, frame 2 -> 3,
1024x436) ships its ground-truth flow and occlusions. The warp error is Lai et al.'s (2018), the
squared change of the output along that flow, with their mask made from the truth: left out are
pixels occluded in the next frame, flagged invalid, moved out of the frame, or on a motion boundary
(Ruder et al.'s gradient test on the true flow, 1.5 % of the pixels). The per-frame stylization's
error is the reference: ratio = smoothed / per-frame (target <= 0.3).

The default flow smoother (strength 0.7) runs on all 52 built-in styles over the clip's 4 frames
with its flow at several long sides (480: the old rule's; 640: the current `host.flow_side`), and
the same pair is measured with Farneback's and DIS's flow as well, to show how far each estimated
metric sits from the truth. A second part does the same at 1920 px wide: the pair scaled up 1.875
times (bicubic; the true flow scaled with it, the mask shrunk by a pixel), on 9 styles (the busiest
and the calmest) with the flow at 480 (the old rule's), 768, 960 (the current rule's) and 1280. Its
content is smoother than a real 1920 px frame, but the networks paint at their own scale all the
same. A third part times the smoother alone per frame at 640x480, 1024x436,
1280x720 and 1920x1080 under the old rule and the current one, alternated frame by frame in one run.

Run: python benchmarks/temporal_truth.py   (about 12 min on 2 CPU cores)
Writes benchmarks/results/temporal_truth.{json,md,png}.
"""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
from PIL import Image
from temporal import DATA, RESULTS, drift, smooth, wearing_each

from rtstyle.api import load_stylizer
from rtstyle.config import SMOOTH_STRENGTH, EngineConfig
from rtstyle.model.styles import StyleChoice, builtin_styles
from rtstyle.temporal.host import HostFlow, flow_side
from rtstyle.temporal.metrics import pair_flows, warping_error_from

CLIP = DATA / "frames" / "sintel_alley_1_clean_gt"
SIDES = (480, 576, 640, 768, 1024)
WIDE, WIDE_SIDES = 1920, (480, 768, 960, 1280)
WIDE_STYLES = (("quality", "tapestry"), ("quality", "mosaic"), ("quality", "abstract-strokes"),
               ("quality", "ink-wash"), ("fast", "color-field"), ("fast", "dusk-oil"), ("fast", "night-brush"),
               ("fast", "paper-cutout"), ("fast", "woodcut"))
OLD_RULE = 480  # the long side every frame above 960 px got before: half the frame, at most 480
COST_SIZES = ((480, 640), (436, 1024), (720, 1280), (1080, 1920))


def load_truth() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The clip's frames, and for frame 2 -> 3: where each pixel of frame 2 is in frame 3 (H, W, 2
    float32 maps for cv2.remap) and the mask of pixels to count."""
    frames = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(CLIP.glob("frame_*.png"))]
    raw = np.fromfile(CLIP / "gt" / "frame_0002.flo", np.float32)
    if raw[0] != 202021.25:
        raise ValueError("not a Middlebury .flo file")
    width, height = raw[1:3].view(np.int32)
    flow = raw[3:].reshape(height, width, 2)
    occluded = np.asarray(Image.open(CLIP / "gt" / "occlusions" / "frame_0002.png")) > 0
    invalid = np.asarray(Image.open(CLIP / "gt" / "invalid" / "frame_0002.png")) > 0
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    maps = np.stack([grid_x + flow[..., 0], grid_y + flow[..., 1]], axis=-1)
    inside = (maps[..., 0] >= 0) & (maps[..., 0] <= width - 1) & (maps[..., 1] >= 0) & (maps[..., 1] <= height - 1)
    du_y, du_x = np.gradient(flow[..., 0])
    dv_y, dv_x = np.gradient(flow[..., 1])
    boundary = du_x**2 + du_y**2 + dv_x**2 + dv_y**2 > 0.01 * (flow**2).sum(axis=-1) + 0.002
    return frames, maps, (~occluded & ~invalid & inside & ~boundary).astype(np.float32)


def true_warp_error(outputs: list[np.ndarray], maps: np.ndarray, mask: np.ndarray) -> float:
    """Masked mean squared change between output 2 and output 3 moved back along the true flow."""
    second = outputs[1].astype(np.float32) / 255.0
    third = cv2.remap(outputs[2].astype(np.float32) / 255.0, maps, None, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)
    return float((mask * ((second - third) ** 2).sum(axis=-1)).sum() / mask.sum())


def run_styles(frames: list[np.ndarray], maps: np.ndarray, mask: np.ndarray) -> list[dict]:
    # The estimated metrics on the same pair (frame 3 against 2, the second of the clip's pairs).
    estimated = {method: pair_flows(frames, method)[1:2] for method in ("farneback", "dis")}
    rows = []
    for model in ("fast", "quality"):
        names = builtin_styles(model)
        for style, stylizer in zip(names, wearing_each(model, [StyleChoice({n: 1.0}) for n in names])):
            per_frame = stylizer(frames)
            row = {"model": model, "style": style, "per_frame": true_warp_error(per_frame, maps, mask), "sides": {}}
            for side in SIDES:
                out, _ = smooth(frames, per_frame, HostFlow(SMOOTH_STRENGTH, flow_side=side))
                entry = {"ratio": true_warp_error(out, maps, mask) / row["per_frame"], "drift": drift(out, per_frame)}
                for method, flows in estimated.items():
                    entry[f"ratio_{method}"] = (warping_error_from(flows, out[1:3])
                                                / warping_error_from(flows, per_frame[1:3]))
                row["sides"][str(side)] = entry
            rows.append(row)
            print(json.dumps({"model": model, "style": style,
                              "ratio": {s: round(e["ratio"], 3) for s, e in row["sides"].items()}}), flush=True)
    return rows


def scaled_up(frames: list[np.ndarray], maps: np.ndarray, mask: np.ndarray
              ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The clip at `WIDE` px wide, with its true motion and mask to match."""
    height, width = frames[0].shape[:2]
    scale = WIDE / width
    size = (WIDE, round(height * scale))
    grid = np.stack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)), axis=-1)
    flow = cv2.resize((maps - grid) * scale, size, interpolation=cv2.INTER_NEAREST)
    wide_grid = np.stack(np.meshgrid(np.arange(size[0], dtype=np.float32), np.arange(size[1], dtype=np.float32)),
                         axis=-1)
    # Nearest-neighbour scaling blurs no flow across a motion boundary; the shrunk mask keeps away from it.
    wide_mask = cv2.erode(cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST), np.ones((3, 3), np.uint8))
    wide = [cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC) for frame in frames]
    return wide, wide_grid + flow, wide_mask


def run_wide(frames: list[np.ndarray], maps: np.ndarray, mask: np.ndarray) -> list[dict]:
    rows = []
    for model, style in WIDE_STYLES:
        stylizer = load_stylizer(model, StyleChoice({style: 1.0}), EngineConfig(backend="onnx", device="cpu"))
        per_frame = stylizer(frames)
        row = {"model": model, "style": style, "per_frame": true_warp_error(per_frame, maps, mask), "sides": {}}
        for side in WIDE_SIDES:
            out, _ = smooth(frames, per_frame, HostFlow(SMOOTH_STRENGTH, flow_side=side))
            row["sides"][str(side)] = {"ratio": true_warp_error(out, maps, mask) / row["per_frame"],
                                       "drift": drift(out, per_frame)}
        rows.append(row)
        print(json.dumps({"wide": WIDE, "model": model, "style": style,
                          "ratio": {s: round(e["ratio"], 3) for s, e in row["sides"].items()}}), flush=True)
    return rows


def time_rules(frames: list[np.ndarray], repeats: int = 12) -> list[dict]:
    """Smoother ms per frame (median) under the old rule and the current one, at each size: the clip's
    frames resized there, stylized stand-ins (the frames themselves), alternated frame by frame."""
    results = []
    for height, width in COST_SIZES:
        clip = [cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in frames]
        stylized = [frame.astype(np.float32) / 255.0 for frame in clip]
        long = max(height, width)
        sides = {"old": min(long, max(256, min(OLD_RULE, long // 2))), "current": flow_side(height, width)}
        smoothers = {name: HostFlow(SMOOTH_STRENGTH, flow_side=side) for name, side in sides.items()}
        times: dict[str, list[float]] = {name: [] for name in sides}
        for step in range(repeats + 1):
            index = step % len(clip)
            for name, smoother in smoothers.items():
                start = time.perf_counter()
                smoother(clip[index], stylized[index])
                if step:  # the first call only starts the state
                    times[name].append(1000 * (time.perf_counter() - start))
        results.append({"size": [width, height], "sides": sides,
                        "ms": {name: float(np.median(values)) for name, values in times.items()}})
        print(json.dumps(results[-1]), flush=True)
    return results


def summary(rows: list[dict]) -> dict:
    out = {}
    for side in map(str, SIDES):
        entries = [row["sides"][side] for row in rows]
        out[side] = {key: {"mean": float(np.mean([e[key] for e in entries])),
                           "worst": float(max(e[key] for e in entries)),
                           "styles_over_0.3": sum(e[key] > 0.3 for e in entries)}
                     for key in ("ratio", "ratio_farneback", "ratio_dis")}
        out[side]["worst_drift"] = float(max(e["drift"] for e in entries))
    return out


def markdown(report: dict) -> str:
    lines = ["Default flow smoother (strength 0.7) on all 52 built-in styles, Sintel alley_1 (1024x436, 4 frames), "
             "warp error of frame 2 -> 3 along the **ground-truth flow** (mask: true occlusions, invalid, out of "
             "frame, motion boundaries). ratio = smoothed / per-frame (target <= 0.3); the same pair measured with "
             "Farneback's and DIS's flow beside it. Flow side: the long side the smoother's flow runs at "
             f"(480: the old rule; {report['current_side']}: the current rule for 1024 px).", "",
             "| flow side | true ratio mean | worst | styles over 0.3 | Farneback ratio mean / worst / over | "
             "DIS ratio mean / worst / over | worst drift (4 frames) |", "|---:|---:|---:|---:|---|---|---:|"]
    for side, s in report["summary"].items():
        cells = [f"{s[k]['mean']:.3f} / {s[k]['worst']:.2f} / {s[k]['styles_over_0.3']}"
                 for k in ("ratio_farneback", "ratio_dis")]
        lines.append(f"| {side} | {s['ratio']['mean']:.3f} | {s['ratio']['worst']:.3f} | "
                     f"{s['ratio']['styles_over_0.3']}/52 | {cells[0]} | {cells[1]} | {s['worst_drift']:.4f} |")
    wide = report["wide"]
    lines += ["", f"The same pair scaled up to {wide['size'][0]}x{wide['size'][1]} (bicubic, true flow scaled with "
              f"it), {len(wide['rows'])} styles; current rule: flow side {wide['current_side']}:", "",
              "| model | style | per-frame | " + " | ".join(f"flow {s}" for s in WIDE_SIDES) + " |",
              "|---|---|---:|" + "---:|" * len(WIDE_SIDES)]
    for row in wide["rows"]:
        cells = [row["sides"][str(s)]["ratio"] for s in WIDE_SIDES]
        lines.append(f"| {row['model']} | {row['style']} | {row['per_frame']:.4f} | "
                     + " | ".join(f"**{c:.3f}**" if c > 0.3 else f"{c:.3f}" for c in cells) + " |")
    means = [np.mean([row["sides"][str(s)]["ratio"] for row in wide["rows"]]) for s in WIDE_SIDES]
    lines.append("| | mean | | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    lines += ["", "Smoother alone, ms per frame (median, lean path, 2 CPU cores; old and current rule alternated "
              "frame by frame):", "", "| frame | old rule: flow side / ms | current rule: flow side / ms | ratio |",
              "|---|---|---|---:|"]
    for entry in report["cost"]:
        (width, height), sides, ms = entry["size"], entry["sides"], entry["ms"]
        lines.append(f"| {width}x{height} | {sides['old']} / {ms['old']:.1f} | {sides['current']} / "
                     f"{ms['current']:.1f} | {ms['current'] / ms['old']:.2f} |")
    lines += ["", "Per style, true ratio at each flow side (**bold**: over 0.3):", "",
              "| model | style | per-frame | " + " | ".join(map(str, SIDES)) + " |",
              "|---|---|---:|" + "---:|" * len(SIDES)]
    for row in report["rows"]:
        cells = []
        for side in map(str, SIDES):
            ratio = row["sides"][side]["ratio"]
            cells.append(f"**{ratio:.3f}**" if ratio > 0.3 else f"{ratio:.3f}")
        lines.append(f"| {row['model']} | {row['style']} | {row['per_frame']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    sides = [int(s) for s in report["summary"]]
    for key, label in (("ratio", "true flow"), ("ratio_farneback", "Farneback"), ("ratio_dis", "DIS medium")):
        means = [report["summary"][str(s)][key]["mean"] for s in sides]
        worst = [report["summary"][str(s)][key]["worst"] for s in sides]
        line, = axis.plot(sides, means, marker="o", label=f"{label}: mean")
        axis.plot(sides, worst, marker="x", linestyle="--", color=line.get_color(), label=f"{label}: worst style")
    axis.axhline(0.3, color="gray", linewidth=0.8)
    axis.axvline(report["current_side"], color="gray", linestyle=":", linewidth=0.8)
    axis.set_xlabel("long side of the smoother's flow (frame 1024x436)")
    axis.set_ylabel("warp error / per-frame")
    axis.set_title("Flow smoother on 52 styles, Sintel alley_1 2->3")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(RESULTS / "temporal_truth.png", dpi=110)


def main() -> None:
    frames, maps, mask = load_truth()
    height, width = frames[0].shape[:2]
    report = {"clip": CLIP.name, "size": [width, height], "strength": SMOOTH_STRENGTH, "sides": list(SIDES),
              "current_side": flow_side(height, width), "mask_share": float(mask.mean())}
    report["rows"] = run_styles(frames, maps, mask)
    report["summary"] = summary(report["rows"])
    wide_frames, wide_maps, wide_mask = scaled_up(frames, maps, mask)
    wide_height, wide_width = wide_frames[0].shape[:2]
    report["wide"] = {"size": [wide_width, wide_height], "sides": list(WIDE_SIDES),
                      "current_side": flow_side(wide_height, wide_width),
                      "rows": run_wide(wide_frames, wide_maps, wide_mask)}
    report["cost"] = time_rules(frames)
    (RESULTS / "temporal_truth.json").write_text(json.dumps(report, separators=(",", ":")))
    (RESULTS / "temporal_truth.md").write_text(markdown(report))
    plot(report)
    print(markdown(report))


if __name__ == "__main__":
    main()
