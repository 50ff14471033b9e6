"""Temporal consistency of every built-in style: warp error, drift and cost of each smoother.

For each model (fast, quality) and each of its 26 built-in styles (the busiest as shipped, steadied
for video by tools/steady_styles.py; benchmarks/steady_styles.py compares them with their
originals), the frames of every clip in ../shared/data (frames/* and a window of video/*) are
stylized one by one on the lean path (ONNX Runtime on the CPU), then each smoother runs over them
with the host smoothers the lean path uses: none, ema, adaptive, the flow smoother as it was before
issue 26 ("flow-old", loaded from git at BASELINE), as it was before its flow went one pyramid level
finer and its confidence took in warps that match ("flow-fast", loaded from git at PREVIOUS), the
current one ("flow", at several strengths) and the current one without its drift cap
("flow-uncapped"). Besides the shared clips, two clips of camera motion over photos (pan, zoom, roll
and sensor noise over kodim05 and kodim14 of ../shared/data/content) stand in for live action,
which the data lacks. Reported per style and smoother:

* warp error (Lai et al. 2018): mean over consecutive pairs of the occlusion-masked squared change
  of the output along the *input's* flow. The flow is OpenCV's Farneback (an estimator the smoothers
  do not use; they use DIS), the mask its forward-backward check (Ruder et al. 2016). Its ratio to
  the per-frame stylization's is the flicker that remains. Beside it, the same ratio with DIS
  `medium` as the metric's flow (the issue allows DIS at another setting than the smoother's; the
  two metrics disagree most on fast, non-rigid motion: docs/smoothing.md);
* drift: mean absolute difference to the per-frame stylization, 0..1 (how far smoothing moves the
  picture: ghosts, smearing);
* time per frame of the smoother alone, at the benchmark size;
* at the clip's hard cut: the mean absolute difference, in levels, of the first frame after it
  from its per-frame stylization (a ghost of the last shot shows here).

A second part times the lean path at 640x480 (stylize + smoother, fast model) with flow-old,
flow-fast and flow in one run, frame by frame alternately, so all see the same machine.

Run: python benchmarks/temporal.py [--quick]   (2 shared CPU cores: --quick about 3 min, full about 20 min)
Writes benchmarks/results/temporal.{json,md,png} and temporal_strip.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from rtstyle.api import load_stylizer, restyle
from rtstyle.config import EngineConfig
from rtstyle.io.video import VideoReader
from rtstyle.model.styles import StyleChoice, builtin_styles
from rtstyle.temporal.cuts import CutDetector
from rtstyle.temporal.host import make_host_smoother
from rtstyle.temporal.metrics import pair_flows, warping_error_from

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
BASELINE = "f4461c2"  # the flow smoother before issue 26
PREVIOUS = "b9a2f55"  # DIS "fast", forward-backward check only, drift estimated on every 4th pixel
STRENGTH = 0.7


def load_frames(side: int, count: int) -> dict[str, list[np.ndarray]]:
    """Clips at long side `side`: the frame folders and the video's first `count` frames."""
    clips = {}
    for folder in sorted((DATA / "frames").iterdir()):
        paths = sorted(folder.glob("frame_*.png"))[:count]
        if len(paths) >= 2:
            clips[folder.name] = [resize(np.asarray(Image.open(p).convert("RGB")), side) for p in paths]
    for clip in sorted((DATA / "video").glob("*.mp4")):
        with VideoReader(clip) as reader:
            clips[clip.stem] = [resize(f.image, side) for _, f in zip(range(count), reader)]
    for seed, name in enumerate(("kodim05", "kodim14")):
        clips[f"photo_motion_{name}"] = photo_motion(DATA / "content" / f"{name}.png", side, count, seed)
    return clips


def photo_motion(path: Path, side: int, count: int, seed: int) -> list[np.ndarray]:
    """A camera moving over a photo: pan (2.5, 1 px a frame at full size), zoom (0.6 %), roll (0.3
    degrees) and Gaussian sensor noise (2 levels), at long side `side`."""
    image = np.asarray(Image.open(path).convert("RGB"))
    height, width = image.shape[:2]
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(count):
        matrix = cv2.getRotationMatrix2D((width / 2 + 3 * t, height / 2), 0.3 * t, 1.0 + 0.006 * t)
        matrix[:, 2] += (2.5 * t, 1.0 * t)
        moved = resize(cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT), side)
        frames.append(np.clip(moved + rng.normal(0, 2.0, moved.shape), 0, 255).astype(np.uint8))
    return frames


def cut_window(side: int, before: int = 4, after: int = 3) -> tuple[list[np.ndarray], int]:
    """Frames around the video's hard cut and the index of the first frame after it.

    The cut is found as the largest content score in the clip (57 against at most 3.5 elsewhere),
    independently of the smoothers' own detector thresholds.
    """
    clip = sorted((DATA / "video").glob("*.mp4"))[0]
    with VideoReader(clip) as reader:
        frames = [resize(f.image, side) for f in reader]
    detector = CutDetector()
    scores = []
    for frame in frames:
        detector(frame)
        scores.append(detector.last_score)
    cut = int(np.argmax(scores))
    start = max(0, cut - before)
    return frames[start:cut + after], cut - start


def resize(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return np.ascontiguousarray(image)
    size = (round(width * scale / 4) * 4, round(height * scale / 4) * 4)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def old_host_module(commit: str):
    """rtstyle/temporal/host.py as it was at `commit`, importable beside the current package."""
    package_name = f"temporal_{commit}"
    folder = Path(tempfile.mkdtemp()) / package_name
    folder.mkdir()
    for name in ("host", "flow", "cuts"):
        shown = subprocess.run(["git", "show", f"{commit}:rtstyle/temporal/{name}.py"], cwd=ROOT,
                               capture_output=True, text=True)
        if shown.returncode == 0:  # cuts.py came after BASELINE
            text = shown.stdout.replace("from ..config", "from rtstyle.config")
            (folder / f"{name}.py").write_text(text.replace("from ..errors", "from rtstyle.errors"))
    (folder / "__init__.py").write_text("")
    spec = importlib.util.spec_from_file_location(package_name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[package_name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{package_name}.host")


def smoother_for(name: str, strength: float, old: dict):
    if name in old:
        return old[name].make_host_smoother("flow", strength)
    if name == "flow-uncapped":
        return make_host_smoother("flow", strength, drift_cap=False)
    return make_host_smoother(name, strength)


def smooth(frames: list[np.ndarray], stylized: list[np.ndarray], smoother) -> tuple[list[np.ndarray], float]:
    """Outputs as uint8 and the smoother's mean seconds per frame (the first, free, frame excluded)."""
    out, spent = [], 0.0
    for i, (content, frame) in enumerate(zip(frames, stylized)):
        x = np.ascontiguousarray(frame, dtype=np.float32) * np.float32(1 / 255)
        start = time.perf_counter()
        y = smoother(content, x)
        spent += (time.perf_counter() - start) if i else 0.0
        out.append(np.clip(y * 255 + 0.5, 0, 255).astype(np.uint8))
    return out, spent / max(1, len(frames) - 1)


def drift(out: list[np.ndarray], per_frame: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(a.astype(np.float32) - b) for a, b in zip(out, per_frame)]) / 255)


def wearing_each(model: str, choices: list[StyleChoice]) -> Iterator[object]:
    """A lean (ONNX Runtime, CPU) stylizer wearing each style in turn: restyled in place where the style
    changes norms only, loaded anew for a style with convs of its own."""
    stylizer = None
    for choice in choices:
        if stylizer is None or not restyle(stylizer, model, choice):
            stylizer = load_stylizer(model, choice, EngineConfig(backend="onnx", device="cpu"))
        yield stylizer


def run_styles(args, clips, flows, dis_flows, cut_frames, cut_at, old) -> tuple[list[dict], dict]:
    rows, strip = [], {}
    settings = [("none", 0.0), ("ema", STRENGTH), ("adaptive", STRENGTH), ("flow-old", STRENGTH),
                ("flow-fast", STRENGTH), ("flow-uncapped", STRENGTH)]
    settings += [("flow", s) for s in args.strengths]
    for model in args.models:
        names = args.styles or builtin_styles(model)
        for style, stylizer in zip(names, wearing_each(model, [StyleChoice({n: 1.0}) for n in names])):
            for clip, frames in clips.items():
                per_frame = stylizer(frames)
                base = warping_error_from(flows[clip], per_frame)
                base_dis = warping_error_from(dis_flows[clip], per_frame)
                for kind, strength in settings:
                    out, seconds = smooth(frames, per_frame, smoother_for(kind, strength, old))
                    error = warping_error_from(flows[clip], out)
                    ratio_dis = warping_error_from(dis_flows[clip], out) / base_dis
                    rows.append({"model": model, "style": style, "clip": clip, "frames": len(frames),
                                 "smoother": kind, "strength": strength, "warp_error": error,
                                 "per_frame_warp_error": base, "ratio": error / base, "ratio_dis": ratio_dis,
                                 "drift": drift(out, per_frame), "ms_per_frame": 1000 * seconds})
                    if (model, style, clip) == (args.models[0], args.strip_style, args.strip_clip):
                        strip[(kind, strength)] = out[-1]
                        strip["per-frame"] = per_frame[-1]
            cut_styled = stylizer(cut_frames)
            for kind, strength in settings:
                out, _ = smooth(cut_frames, cut_styled, smoother_for(kind, strength, old))
                levels = [float(np.mean(np.abs(out[i].astype(np.float32) - cut_styled[i]))) for i in
                          range(cut_at, len(cut_frames))]
                rows.append({"model": model, "style": style, "clip": "cut", "smoother": kind, "strength": strength,
                             "cut_levels": levels})
            print(json.dumps({"model": model, "style": style, "done": True}), flush=True)
    return rows, strip


def latency_640x480(frames: list[np.ndarray], old: dict, repeats: int) -> dict:
    """Lean path at 640x480, fast model: stylize + smoother per frame, flow-old, flow-fast and flow
    alternately."""
    frames = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_LINEAR) for f in frames]
    stylizer = load_stylizer("fast", StyleChoice({"mosaic": 1.0}), EngineConfig(backend="onnx", device="cpu"))
    stylizer.warm_up(1, 640, 480)
    makers = {"none": lambda: make_host_smoother("none", STRENGTH),
              "flow-old": lambda: old["flow-old"].make_host_smoother("flow", STRENGTH),
              "flow-fast": lambda: old["flow-fast"].make_host_smoother("flow", STRENGTH),
              "flow": lambda: make_host_smoother("flow", STRENGTH)}
    smoothers = {name: make() for name, make in makers.items()}
    times = {name: {"total": [], "smoother": []} for name in makers}
    for _ in range(repeats):
        for frame in frames:
            for name, smoother in smoothers.items():
                start = time.perf_counter()
                styled = np.ascontiguousarray(stylizer([frame])[0], dtype=np.float32) * np.float32(1 / 255)
                middle = time.perf_counter()
                smoother(frame, styled)
                end = time.perf_counter()
                times[name]["total"].append(end - start)
                times[name]["smoother"].append(end - middle)
    report = {name: {k: 1000 * float(np.median(v[1:])) for k, v in t.items()} for name, t in times.items()}
    report["growth_vs_old"] = report["flow"]["total"] / report["flow-old"]["total"] - 1
    report["growth_vs_fast"] = report["flow"]["total"] / report["flow-fast"]["total"] - 1
    return report


def summarise(rows: list[dict]) -> list[dict]:
    """Per model, style and setting: means over clips, and the worst cut."""
    out = []
    keys = sorted({(r["model"], r["style"], r["smoother"], r["strength"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2], k[3]))
    for model, style, kind, strength in keys:
        chosen = [r for r in rows if (r["model"], r["style"], r["smoother"], r["strength"]) == (model, style, kind,
                                                                                             strength)]
        clips = [r for r in chosen if r["clip"] != "cut"]
        cut = [r for r in chosen if r["clip"] == "cut"][0]
        out.append({"model": model, "style": style, "smoother": kind, "strength": strength,
                    "per_frame_warp_error": float(np.mean([r["per_frame_warp_error"] for r in clips])),
                    "warp_error": float(np.mean([r["warp_error"] for r in clips])),
                    "ratio": float(np.mean([r["ratio"] for r in clips])),
                    "worst_ratio": float(np.max([r["ratio"] for r in clips])),
                    "drift": float(np.mean([r["drift"] for r in clips])),
                    "worst_drift": float(np.max([r["drift"] for r in clips])),
                    "ms_per_frame": float(np.mean([r["ms_per_frame"] for r in clips])),
                    "cut_first_frame_levels": cut["cut_levels"][0], "cut_worst_levels": max(cut["cut_levels"])})
        if all("ratio_dis" in r for r in clips):
            out[-1]["ratio_dis"] = float(np.mean([r["ratio_dis"] for r in clips]))
            out[-1]["worst_ratio_dis"] = float(np.max([r["ratio_dis"] for r in clips]))
    return out


def markdown(report: dict) -> str:
    summary = report["summary"]
    lines = [f"Lean path (ONNX Runtime, CPU), clips {', '.join(report['clips'])} at long side {report['side']}, "
             f"{report['frames']} frames each; warp error with {report['metric_flow']} flow on the inputs. "
             "ratio = warp error / per-frame warp error (mean over clips; target <= 0.30), drift = mean |output - "
             "per-frame| in 0..1 (target < 0.03), cut = mean |difference| in levels of the first frame after "
             "the hard cut from its per-frame stylization (target <= 1).", ""]
    kinds = sorted({(s["smoother"], s["strength"]) for s in summary}, key=lambda k: (k[0] != "none", k))
    for model in report["models"]:
        lines += [f"### {model} model", "", "| style | per-frame warp | " + " | ".join(
            f"{k} {v:.2f} ratio / drift / cut" for k, v in kinds[1:]) + " |",
            "|---|---:|" + "---:|" * (len(kinds) - 1)]
        for style in sorted({s["style"] for s in summary if s["model"] == model}):
            cells = {(s["smoother"], s["strength"]): s for s in summary if (s["model"], s["style"]) == (model, style)}
            row = [style, f"{cells[kinds[0]]['per_frame_warp_error']:.5f}"]
            for k in kinds[1:]:
                c = cells[k]
                mark = "**" if c["ratio"] <= 0.3 and c["drift"] < 0.03 else ""
                row.append(f"{mark}{c['ratio']:.2f} / {c['drift']:.3f}{mark} / {c['cut_first_frame_levels']:.1f}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += ["Bold: both targets met (means over the clips). Mean over all styles of both models; 'styles "
              "meeting both' by the means over the clips, then on every clip alone:", "",
              "| smoother | strength | ratio | worst ratio | drift | worst drift | styles meeting both | "
              "on every clip | DIS metric: ratio, on every clip | ms/frame | worst cut levels |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, strength in kinds:
        chosen = [s for s in summary if (s["smoother"], s["strength"]) == (kind, strength)]
        met = sum(s["ratio"] <= 0.3 and s["drift"] < 0.03 for s in chosen)
        everywhere = sum(s["worst_ratio"] <= 0.3 and s["worst_drift"] < 0.03 for s in chosen)
        dis = "-"
        if all("ratio_dis" in s for s in chosen):
            dis_everywhere = sum(s["worst_ratio_dis"] <= 0.3 and s["worst_drift"] < 0.03 for s in chosen)
            dis = f"{np.mean([s['ratio_dis'] for s in chosen]):.2f}, {dis_everywhere}/{len(chosen)}"
        lines.append(f"| {kind} | {strength:.2f} | {np.mean([s['ratio'] for s in chosen]):.2f} | "
                     f"{max(s['worst_ratio'] for s in chosen):.2f} | {np.mean([s['drift'] for s in chosen]):.3f} | "
                     f"{max(s['worst_drift'] for s in chosen):.3f} | {met}/{len(chosen)} | "
                     f"{everywhere}/{len(chosen)} | {dis} | {np.mean([s['ms_per_frame'] for s in chosen]):.2f} | "
                     f"{max(s['cut_first_frame_levels'] for s in chosen):.1f} |")
    lat = report["latency_640x480"]
    lines += ["", "Lean path at 640x480, fast model, per frame (median): "
              f"stylize + none {lat['none']['total']:.1f} ms; "
              f"+ flow-old {lat['flow-old']['total']:.1f} ms (smoother {lat['flow-old']['smoother']:.1f}); "
              f"+ flow-fast {lat['flow-fast']['total']:.1f} ms (smoother {lat['flow-fast']['smoother']:.1f}); "
              f"+ flow {lat['flow']['total']:.1f} ms (smoother {lat['flow']['smoother']:.1f}): "
              f"{100 * lat['growth_vs_old']:+.0f}% against flow-old, {100 * lat['growth_vs_fast']:+.0f}% against "
              "flow-fast."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    kinds = sorted({(s["smoother"], s["strength"]) for s in report["summary"]} - {("none", 0.0)})
    for (kind, strength), color in zip(kinds, plt.cm.tab10.colors):
        for model, marker in zip(report["models"], "o^"):
            chosen = [s for s in report["summary"] if (s["smoother"], s["strength"], s["model"]) ==
                      (kind, strength, model)]
            ax.scatter([s["drift"] for s in chosen], [s["ratio"] for s in chosen], s=14, color=color, marker=marker,
                       label=f"{kind} {strength:.2f} ({model})")
    ax.axvline(0.03, color="gray", linestyle="--", linewidth=0.8)
    ax.axhline(0.3, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("drift: mean |output - per-frame stylization| (0..1)")
    ax.set_ylabel("warp error / per-frame warp error")
    ax.set_title("Every built-in style: flicker left vs drift (target: lower left box)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def save_strip(strip: dict, path: Path, strength: float) -> None:
    """Per frame, the flow smoother before issue 26, before its finer flow, and now, at the same
    moment, side by side and labelled; below, the middle third of each at 3x (nearest), where ghosts
    and smearing show."""
    panels = [("per frame", strip["per-frame"]), ("flow-old", strip[("flow-old", strength)]),
              ("flow-fast", strip[("flow-fast", strength)]), ("flow (new)", strip[("flow", strength)])]
    Image.fromarray(strip_image([image for _, image in panels], [label for label, _ in panels])).save(path)


def strip_image(images: list[np.ndarray], labels: list[str]) -> np.ndarray:
    height, width = images[0].shape[:2]
    top, zoomed = [], []
    for label, image in zip(labels, images):
        middle = image[height // 3:height // 3 + height // 3, width // 3:width // 3 + width // 3]
        zoomed.append(cv2.resize(middle, (width, height), interpolation=cv2.INTER_NEAREST))
        image = image.copy()
        cv2.putText(image, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(image, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        top.append(image)
    return np.concatenate([np.concatenate(top, axis=1), np.concatenate(zoomed, axis=1)], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 frames per clip, long side 256, 4 styles per model")
    parser.add_argument("--models", nargs="+", default=["fast", "quality"])
    parser.add_argument("--styles", nargs="+", help="default: all built-in styles")
    parser.add_argument("--strengths", nargs="+", type=float, default=[0.5, STRENGTH, 0.85])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--side", type=int, default=320)
    parser.add_argument("--strip-style", default="mosaic")
    parser.add_argument("--strip-clip", default="sintel_raft_demo")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--redraw", action="store_true", help="rewrite the .md and .png from the committed .json")
    args = parser.parse_args()
    if args.redraw:
        report = json.loads((args.out / "temporal.json").read_text())
        (args.out / "temporal.md").write_text(markdown(report))
        plot(report, args.out / "temporal.png")
        return
    if args.quick:
        args.frames, args.side = 6, 256
        args.styles = args.styles or ["mosaic", "brick-blocks", "starry-swirl", "ink-wash"]
    if STRENGTH not in args.strengths:
        args.strengths.append(STRENGTH)
    old = {"flow-old": old_host_module(BASELINE), "flow-fast": old_host_module(PREVIOUS)}
    clips = load_frames(args.side, args.frames)
    flows = {name: pair_flows(frames, "farneback") for name, frames in clips.items()}
    dis_flows = {name: pair_flows(frames, "dis") for name, frames in clips.items()}
    cut_frames, cut_at = cut_window(args.side)
    rows, strip = run_styles(args, clips, flows, dis_flows, cut_frames, cut_at, old)
    latency = latency_640x480(next(iter(clips.values()))[:4] if args.quick else clips[args.strip_clip], old,
                              repeats=2 if args.quick else 3)
    report = {"models": args.models, "clips": list(clips), "frames": args.frames, "side": args.side,
              "metric_flow": "OpenCV Farneback (pyr 0.5, 4 levels, window 15)",
              "second_metric_flow": "OpenCV DIS medium (ratio_dis)", "baseline": BASELINE,
              "previous": PREVIOUS,
              "latency_640x480": latency, "rows": rows}
    report["summary"] = summarise(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "temporal_quick" if args.quick else "temporal"
    (args.out / f"{stem}.json").write_text(json.dumps(report, separators=(",", ":")))
    (args.out / f"{stem}.md").write_text(markdown(report))
    plot(report, args.out / f"{stem}.png")
    save_strip(strip, args.out / f"{stem}_strip.png", STRENGTH)
    print(markdown(report))


if __name__ == "__main__":
    main()
