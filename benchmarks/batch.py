"""Many files and long videos: one process per file, against one batch process, against Ray workers; and the
flicker at the joins of a video split with --segment-seconds.

Part 1 (throughput). 8 short clips (synthetic scene, 320x180, 2 s at 24 fps, AAC tone), converted with the fast
model three ways, each as whole processes timed from outside, like a user would run them:
  sequential  `rtstyle stylize CLIP -o OUT` once per clip: imports and model load 8 times;
  batch       `rtstyle stylize DIR -o OUT/`: one process, the stylizer built once;
  ray         `rtstyle stylize DIR -o OUT/ --ray`: a local Ray with one worker per core (2 here), each
              building its stylizer once; ray.init and shutdown included.
The modes alternate for `--repeats` rounds so that each sees the same (shared, busy) machine; the median is
reported, with the load average around each run. Ray is not expected to win on one 2-core machine: it adds a
cluster start and 2 workers of 1 thread each do the work one process with 2 threads does.

Part 2 (an estimate, not a measurement). Throughput on N GPUs from the single-H100 figures in
benchmarks/results/gpu_summary.json (1080p H.264 file to file, and the host's decode and encode rates).

Part 3 (joins). Big Buck Bunny's 10 s (re-encoded with a keyframe every second: the original has two), at
--max-side 320, with temporal smoothing: a single run, the same split into 2 s segments (4 joins) with the
smoother's pre-roll, and without it (cold). The warping error of each frame pair (rtstyle.temporal.metrics),
at the joins and elsewhere.

Run: python benchmarks/batch.py [--repeats 5] [--skip-throughput] [--skip-joins]
Writes benchmarks/results/batch.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CLIPS, SECONDS, WIDTH, HEIGHT, FPS = 8, 2.0, 320, 180, 24
MODES = ("sequential", "batch", "ray")


def rtstyle() -> str:
    return str(Path(shutil.which("rtstyle") or Path(sys.executable).with_name("rtstyle")))


def make_clips(folder: Path) -> list[Path]:
    from rtstyle.io.synthetic import write_clip

    folder.mkdir(parents=True)
    return [write_clip(folder / f"clip{i}.mp4", seconds=SECONDS, width=WIDTH, height=HEIGHT, fps=FPS)
            for i in range(CLIPS)]


def run(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({done.returncode}): {done.stderr[-800:]}")
    return wall, done.stdout


def one_round(mode: str, clips: list[Path], out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    load = os.getloadavg()[0]
    common = ["--model", "fast", "-q"]
    if mode == "sequential":
        wall, files = 0.0, []
        for clip in clips:
            seconds, _ = run([rtstyle(), "stylize", str(clip), "-o", str(out / clip.name), *common, "-y"])
            wall += seconds
            files.append(round(seconds, 3))
        return {"wall_s": round(wall, 2), "per_file_process_s": files, "load_before": load,
                "load_after": os.getloadavg()[0]}
    extra = ["--ray"] if mode == "ray" else []
    wall, stdout = run([rtstyle(), "stylize", str(clips[0].parent), "-o", f"{out}/", *common, "--json", *extra])
    summary = json.loads(stdout[stdout.index("{"):])
    if summary["done"] != len(clips):
        raise RuntimeError(f"{mode}: {summary}")
    work = sum(f["seconds"] for f in summary["files"])
    return {"wall_s": round(wall, 2), "sum_file_s": round(work, 2), "load_before": load,
            "load_after": os.getloadavg()[0]}


def throughput(repeats: int, folder: Path) -> dict:
    clips = make_clips(folder / "clips")
    frames = CLIPS * round(SECONDS * FPS)
    rounds = {mode: [] for mode in MODES}
    for mode in MODES:  # warm-up: page cache, Ray's first start (auth token, session folders)
        one_round(mode, clips[:2] if mode == "sequential" else clips, folder / "out" / mode)
    for _ in range(repeats):
        for mode in MODES:
            rounds[mode].append(one_round(mode, clips, folder / "out" / mode))
    result = {}
    for mode, runs in rounds.items():
        wall = statistics.median(r["wall_s"] for r in runs)
        best = min(r["wall_s"] for r in runs)
        result[mode] = {"runs": runs, "median_wall_s": round(wall, 2), "fps": round(frames / wall, 2),
                        "best_wall_s": round(best, 2), "best_fps": round(frames / best, 2)}
    return {"clips": CLIPS, "clip": f"{WIDTH}x{HEIGHT}, {SECONDS:g} s at {FPS} fps, AAC tone", "frames": frames,
            "model": "fast", "modes": result}


def gpu_estimate() -> dict:
    """Files per hour on N GPUs from the single-GPU figures: an estimate, labelled as one."""
    summary = json.loads((RESULTS / "gpu_summary.json").read_text())
    runs = {(e["model"], e["smooth"]): e for e in summary["end_to_end"] if e["run"].startswith("run3")}
    host = summary["host_video"]
    # One node's host ceiling for 1080p H.264: decode and encode share its cores, so their rates add as times.
    host_fps = 1 / (1 / host["decode_rgb_fps"] + 1 / host["encode_libx264_veryfast_fps"])
    work = {"files": 300, "seconds_each": 10, "fps": 30}
    frames = work["files"] * work["seconds_each"] * work["fps"]
    rows = []
    for model in ("quality", "fast"):
        per_gpu = runs[(model, "none")]["fps"]
        for gpus in (1, 2, 4, 8, 16):
            one_per_node = gpus * per_gpu
            one_node = min(gpus * per_gpu, host_fps)
            rows.append({"model": model, "gpus": gpus, "fps_one_gpu_per_node": round(one_per_node, 1),
                         "minutes_one_gpu_per_node": round(frames / one_per_node / 60, 1),
                         "fps_all_in_one_16_core_node": round(one_node, 1),
                         "minutes_all_in_one_16_core_node": round(frames / one_node / 60, 1)})
    return {"label": "ESTIMATE, not measured: linear in GPUs from one H100's file-to-file rate, capped by one "
                     "node's host decode+encode rate where the GPUs share a node",
            "source": "benchmarks/results/gpu_summary.json (end_to_end run3, host_video)",
            "device": summary["device"], "single_gpu_fps": {m: runs[(m, "none")]["fps"] for m in ("quality", "fast")},
            "host_ceiling_fps_16_cores": round(host_fps, 1), "workload": work, "frames": frames, "rows": rows,
            "not_counted": "Ray start and each worker's engine build (compile warm-up 1-10 s per worker, once), "
                           "reading and writing shared storage, per-file open/close"}


def keyframed(src: Path, dst: Path, gop: int) -> Path:
    """`src` re-encoded with a keyframe every `gop` frames, its audio copied."""
    import av

    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = source.streams.video[0]
        video = out.add_stream("libx264", rate=stream.average_rate)
        video.width, video.height, video.pix_fmt = stream.width, stream.height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "18", "g": str(gop), "keyint_min": str(gop),
                         "sc_threshold": "0"}
        audio = {s.index: out.add_stream_from_template(s) for s in source.streams.audio}
        for packet in source.demux():
            if packet.stream.type == "audio" and packet.size:
                packet.stream = audio[packet.stream.index]
                out.mux(packet)
            elif packet.stream.type == "video":  # the empty packet at the end flushes the decoder's last frames
                for frame in packet.decode():
                    frame.pict_type = 0
                    out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return dst


def pair_errors(inputs: list, outputs: list) -> list[float]:
    """Warping error of each consecutive pair (index t: frames t-1 -> t)."""
    from rtstyle.temporal.metrics import warping_error

    return [float("nan")] + [warping_error(inputs[t - 1:t + 1], outputs[t - 1:t + 1]) for t in range(1, len(inputs))]


def decoded(path: Path, max_side: int | None = None) -> list:
    from rtstyle.io.video import VideoReader

    with VideoReader(path, max_side) as reader:
        return [frame.image for frame in reader]


def joins(folder: Path) -> dict:
    import numpy as np

    from rtstyle.api import load_stylizer
    from rtstyle.config import ConvertConfig, EngineConfig
    from rtstyle.jobs.convert import convert_file
    from rtstyle.jobs.segments import convert_segmented, plan_segments, preroll_frames
    from rtstyle.model.styles import StyleChoice

    src = keyframed(DATA / "video" / "big_buck_bunny_cut.mp4", folder / "bunny_gop24.mp4", 24)
    stylizer = load_stylizer("fast", StyleChoice(), EngineConfig(device="cpu"))
    inputs = decoded(src, 320)
    report = {"clip": "big_buck_bunny_cut.mp4 re-encoded with a keyframe every 24 frames (1 s)", "max_side": 320,
              "segment_seconds": 2.0, "model": "fast", "smoothers": {}}
    # crf 18 is the default; flow at crf 0 (lossless) too, which shows what of a join's step is the encoder's:
    # each part begins with a keyframe of its own encoder, and the part before ends its stream.
    for smooth, crf in (("ema", 18), ("flow", 18), ("flow", 0)):
        config = ConvertConfig(max_side=320, smooth=smooth, crf=crf)
        preroll = preroll_frames(smooth, config.smooth_strength)
        starts = [s.first for s in plan_segments(src, 2.0, preroll)][1:]
        runs = {}
        started = time.perf_counter()
        key = f"{smooth}_crf{crf}"
        runs["single"] = convert_file(src, folder / f"single_{key}.mp4", stylizer, config).output
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        runs["segmented"] = convert_segmented(src, folder / f"seg_{key}.mp4", stylizer, config, 2.0).output
        segmented_s = time.perf_counter() - started
        runs["segmented_cold"] = convert_segmented(src, folder / f"cold_{key}.mp4", stylizer, config, 2.0,
                                                   preroll=0).output
        entry = {"smooth": smooth, "crf": crf, "strength": config.smooth_strength, "preroll_frames": preroll,
                 "joins_at_frames": starts,
                 "single_s": round(single_s, 2), "segmented_s": round(segmented_s, 2)}
        for name, path in runs.items():
            errors = pair_errors(inputs, decoded(path))
            at = [errors[t] for t in starts]
            elsewhere = [e for t, e in enumerate(errors) if t and t not in starts]
            entry[name] = {"at_joins": [round(e, 5) for e in at], "mean_at_joins": round(float(np.mean(at)), 5),
                           "mean_elsewhere": round(float(np.mean(elsewhere)), 5),
                           "p90_elsewhere": round(float(np.percentile(elsewhere, 90)), 5),
                           "max_elsewhere": round(float(np.max(elsewhere)), 5), "per_pair": [
                               None if np.isnan(e) else round(e, 5) for e in errors]}
        report["smoothers"][key] = entry
    report["keyframe_control"] = keyframe_control(folder, runs["single"], inputs, starts)
    return report


def keyframe_control(folder: Path, lossless: Path, inputs: list, joins: list[int]) -> dict:
    """The lossless single run's frames encoded again at crf 18: in one stream, in one stream with keyframes
    forced at the join frames, and as one stream per segment (what the parts are). Tells what of a join's
    step a keyframe alone makes, in any single run, at its own keyframes."""
    import av
    import numpy as np

    frames = decoded(lossless)
    bounds = [0, *joins, len(frames)]
    gop = joins[0]
    ways = {"one stream": ([(0, len(frames))], {}),
            "one stream, keyframes at the joins": ([(0, len(frames))],
                                                   {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}),
            "one stream per segment": (list(zip(bounds[:-1], bounds[1:])), {})}
    result = {}
    for name, (groups, options) in ways.items():
        made = []
        for n, (start, stop) in enumerate(groups):
            path = folder / f"control_{len(result)}_{n}.mp4"
            with av.open(str(path), "w") as out:
                video = out.add_stream("libx264", rate=24)
                video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
                video.options = {"crf": "18", "preset": "veryfast", **options}
                for index in range(start, stop):
                    frame = av.VideoFrame.from_ndarray(frames[index], format="rgb24")
                    frame.pts, frame.time_base = index, Fraction(1, 24)
                    out.mux(video.encode(frame))
                out.mux(video.encode(None))
            made += decoded(path)
        errors = pair_errors(inputs, made)
        result[name] = {"at_joins": [round(errors[t], 5) for t in joins],
                        "mean_at_joins": round(float(np.mean([errors[t] for t in joins])), 5),
                        "mean_elsewhere": round(float(np.mean([e for t, e in enumerate(errors)
                                                               if t and t not in joins])), 5)}
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("throughput", "joins") if k in result]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "throughput":
            modes = result["throughput"]["modes"]
            walls = [modes[m]["median_wall_s"] for m in MODES]
            bars = ax.bar(MODES, walls, color=["#999999", "#4477aa", "#cc6677"])
            for bar, mode in zip(bars, MODES):
                ax.annotate(f"{modes[mode]['median_wall_s']:.1f} s\n{modes[mode]['fps']:.1f} fps",
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
            ax.set_ylabel("wall seconds (median), lower is better")
            t = result["throughput"]
            ax.set_title(f"{t['clips']} clips, {t['frames']} frames, fast model, 2-core CPU")
            ax.set_ylim(0, max(walls) * 1.25)
        else:
            entry = result["joins"]["smoothers"]["flow_crf18"]
            for name, colour in (("single", "#4477aa"), ("segmented", "#228833"), ("segmented_cold", "#cc6677")):
                values = [float("nan") if v is None else v for v in entry[name]["per_pair"]]
                ax.plot(values, color=colour, lw=1, label=name.replace("_", " "))
            for t in entry["joins_at_frames"]:
                ax.axvline(t, color="black", ls=":", lw=0.8)
            # The scene cut near the end is far off this scale; the scale is the joins'.
            top = 1.4 * max(max(entry[n]["at_joins"]) for n in ("single", "segmented", "segmented_cold"))
            ax.set_ylim(0, top)
            ax.set_xlabel("frame (dotted: joins between segments; a scene cut near 235 is off the scale)")
            ax.set_ylabel("warping error of the pair ending here")
            ax.set_title("flow smoothing, crf 18, 2 s segments: flicker at the joins")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(result: dict) -> str:
    lines = ["# Batches, Ray and segment joins (`python benchmarks/batch.py`)", "",
             f"Machine: {result['machine']['cpus']} CPU cores, shared with other work (load averages in the JSON).",
             ""]
    if "throughput" in result:
        t = result["throughput"]
        lines += [f"## {t['clips']} clips ({t['clip']}), {t['frames']} frames, fast model", "",
                  "| mode | median wall s | fps (median) | best wall s | fps (best) | runs (wall s) |",
                  "|---|---:|---:|---:|---:|---|"]
        for mode in MODES:
            m = t["modes"][mode]
            lines.append(f"| {mode} | {m['median_wall_s']:.1f} | {m['fps']:.1f} | {m['best_wall_s']:.1f} | "
                         f"{m['best_fps']:.1f} | {', '.join(str(r['wall_s']) for r in m['runs'])} |")
        lines += ["", "sequential: one `rtstyle stylize` process per clip; batch: one process for the folder; "
                  "ray: `--ray`, a local Ray with 2 workers of 1 thread each, its start and shutdown included.", ""]
    if "gpu_estimate" in result:
        g = result["gpu_estimate"]
        lines += ["## On N GPUs: an ESTIMATE, not a measurement", "", g["label"] + ".", "",
                  f"From {g['source']} ({g['device']}): file to file at 1080p, {g['single_gpu_fps']['quality']} "
                  f"fps (quality) and {g['single_gpu_fps']['fast']} fps (fast) per GPU; one 16-core host decodes and "
                  f"encodes at most ~{g['host_ceiling_fps_16_cores']} fps. Workload: {g['workload']['files']} files "
                  f"of {g['workload']['seconds_each']} s at {g['workload']['fps']} fps ({g['frames']} frames).", "",
                  "| model | GPUs | fps, one GPU per node | minutes | fps, all GPUs in one 16-core node | minutes |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in g["rows"]:
            lines.append(f"| {r['model']} | {r['gpus']} | {r['fps_one_gpu_per_node']} | "
                         f"{r['minutes_one_gpu_per_node']} | {r['fps_all_in_one_16_core_node']} | "
                         f"{r['minutes_all_in_one_16_core_node']} |")
        lines += ["", f"Not counted: {g['not_counted']}.", ""]
    if "joins" in result:
        j = result["joins"]
        lines += [f"## Flicker at the joins ({j['clip']}, --max-side {j['max_side']}, "
                  f"{j['segment_seconds']:g} s segments)", "",
                  "Warping error of each frame pair (lower is steadier), at the joins against all other pairs:", "",
                  "| smoothing | crf | pre-roll | run | at joins (each) | mean at joins | mean elsewhere | "
                  "p90 elsewhere |", "|---|---:|---:|---|---|---:|---:|---:|"]
        for e in j["smoothers"].values():
            for name in ("single", "segmented", "segmented_cold"):
                r = e[name]
                pre = e["preroll_frames"] if name == "segmented" else 0 if name == "segmented_cold" else "-"
                lines.append(f"| {e['smooth']} | {e['crf']} | {pre} | {name.replace('_', ' ')} | "
                             f"{', '.join(f'{v:.4f}' for v in r['at_joins'])} | {r['mean_at_joins']:.4f} | "
                             f"{r['mean_elsewhere']:.4f} | {r['p90_elsewhere']:.4f} |")
        lines += ["", "'single' is the same pairs in a run without segments: the joins' own content sets them.", "",
                  "The flow/crf 0 single run's frames encoded again at crf 18 (libx264 veryfast), to tell the "
                  "encoder's part:", "", "| encoded as | at joins (each) | mean at joins | mean elsewhere |",
                  "|---|---|---:|---:|"]
        for name, r in j["keyframe_control"].items():
            lines.append(f"| {name} | {', '.join(f'{v:.4f}' for v in r['at_joins'])} | {r['mean_at_joins']:.4f} | "
                         f"{r['mean_elsewhere']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-joins", action="store_true")
    args = parser.parse_args()
    path = RESULTS / "batch.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    with tempfile.TemporaryDirectory(prefix="rtstyle-batch-bench-") as work:
        if not args.skip_throughput:
            result["throughput"] = throughput(args.repeats, Path(work) / "throughput")
        result["gpu_estimate"] = gpu_estimate()
        if not args.skip_joins:
            result["joins"] = joins(Path(work))
    result["load_average_at_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "batch.md").write_text(markdown(result))
    plot(result, RESULTS / "batch.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
