"""The encoder on what rtstyle really writes, and several encoders for one output (`--encoders`).

Every figure here is measured on the frames the encoder really gets: a real clip stylized once
(`../shared/data/video/big_buck_bunny_cut.mp4`, enlarged with `--size`), not one frame written
over and over, which x264 turns into skip blocks (issue #25's table, reproduced in `repeated`).

Sections, each a function the GPU session reuses (benchmarks/gpu_bench.py):
- stages: decode alone; stylize alone (frames in and out of host memory); encode alone on the stylized
  frames (from RGB, as the CPU path hands them over, and from yuv420p, as the GPU path does); the same
  encoder on the source frames and on the first stylized frame repeated.
- threads_vs_processes: two encoders on two halves of the stylized frames, in two threads of one
  process (what `--encoders` does) or in two processes (each reads its frames from a memory-mapped file).
- sweep: libx264 crf x preset on the stylized frames: fps, bitrate, PSNR against the frames themselves.
- joins: per-frame PSNR against the stylized frames, at the chunks' first frames against the others.
- end_to_end: file to file through convert_file with 1 encoder and with N (`--encoders`), once with a
  stylizer that costs nothing (so the encoder is the bound, as on a GPU) and once with the real model.

Run: python benchmarks/encoders.py [--size 1280x720] [--quick]
Writes results/encoders.json, results/encoders.md and results/encoders.png.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLIP = ROOT / ".." / "shared" / "data" / "video" / "big_buck_bunny_cut.mp4"
RESULTS = ROOT / "benchmarks" / "results"


def source_frames(path: Path, size: tuple[int, int] | None) -> tuple[list[np.ndarray], object, float]:
    """The clip's frames as RGB (enlarged to `size` by swscale, as `--max-side` would shrink), its info and
    the decode rate (frames per second, RGB conversion included)."""
    import av

    from rtstyle.io.video import VideoReader

    with VideoReader(path) as reader:
        info = reader.info
    frames = []
    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            width, height = size or (frame.width, frame.height)
            frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
    decode_fps = len(frames) / (time.perf_counter() - start)
    height, width = frames[0].shape[:2]
    # Frames are written with pts 0, 1, 2, ...: one frame per tick of the time base.
    return frames, replace(info, width=width, height=height, audio_streams=0, subtitle_streams=0,
                           time_base=1 / info.rate), decode_fps


def stylize_all(frames: list[np.ndarray], stylizer, batch: int) -> tuple[list[np.ndarray], float]:
    """Every frame through `stylizer` (host memory in and out); frames per second."""
    out = []
    stylizer(frames[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(frames), batch):
        out.extend(stylizer(frames[i:i + batch]))
    return out, len(frames) / (time.perf_counter() - start)


def to_yuv420p(frames: list[np.ndarray], info) -> list[np.ndarray]:
    """The planes the GPU path hands the writer (its layout is yuv420p there)."""
    import av

    sws = info.color.swscale()
    return [av.VideoFrame.from_ndarray(f, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=sws["colorspace"], dst_color_range=sws["range"]).to_ndarray()
        for f in frames]


def encode(frames: list[np.ndarray], info, path: Path, crf: int = 18, preset: str = "veryfast",
           options: dict | None = None) -> dict:
    """One VideoWriter (the pipeline's) over `frames`: fps, bytes, bitrate."""
    from rtstyle.io.video import VideoWriter

    writer = VideoWriter(path, info, crf=crf, preset=preset, copy_audio=False, options=options)
    start = time.perf_counter()
    for index, image in enumerate(frames):
        writer.write(image, index)
    writer.close()
    seconds = time.perf_counter() - start
    size = path.stat().st_size
    return {"fps": round(len(frames) / seconds, 1), "mb": round(size / 1e6, 2),
            "mbit_s": round(size * 8 / (len(frames) / float(info.rate)) / 1e6, 2)}


def psnr(frames: list[np.ndarray], path: Path) -> list[float]:
    """Per-frame PSNR (dB) of the decoded file against `frames`."""
    import av

    values = []
    with av.open(str(path)) as container:
        for frame, reference in zip(container.decode(video=0), frames):
            error = np.mean((frame.to_ndarray(format="rgb24").astype(np.float32) - reference) ** 2)
            values.append(float(10 * np.log10(255**2 / max(error, 1e-6))))
    return values


def _encode_part(args) -> float:
    """A process's share: its frames from the memory-mapped file, encoded by one VideoWriter."""
    npy, first, stop, info, path, threads = args
    frames = np.load(npy, mmap_mode="r")
    encode([np.asarray(frames[i]) for i in range(first, stop)], info, Path(path), options={"threads": str(threads)})
    return time.perf_counter()


def threads_vs_processes(frames, info, folder: Path, rounds: int) -> dict:
    """One encoder (x264's own threads) against two encoders in threads and in processes, alternating."""
    cores = multiprocessing.cpu_count()
    half = len(frames) // 2
    npy = folder / "frames.npy"
    np.save(npy, np.stack(frames))
    times: dict[str, list[float]] = {"one encoder": [], "two in threads": [], "two in processes": []}
    pool = multiprocessing.get_context("spawn").Pool(2)
    pool.map(_encode_part, [(str(npy), 0, 2, info, str(folder / f"w{i}.mp4"), 1) for i in range(2)])  # started
    for _ in range(rounds):
        start = time.perf_counter()
        encode(frames, info, folder / "one.mp4")
        times["one encoder"].append(time.perf_counter() - start)
        start = time.perf_counter()
        workers = [threading.Thread(target=encode, args=(frames[i * half:(i + 1) * half], info,
                                                         folder / f"t{i}.mp4"),
                                    kwargs={"options": {"threads": str(max(1, cores // 2))}}) for i in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        times["two in threads"].append(time.perf_counter() - start)
        start = time.perf_counter()
        pool.map(_encode_part, [(str(npy), i * half, (i + 1) * half, info, str(folder / f"p{i}.mp4"),
                                 max(1, cores // 2)) for i in range(2)])
        times["two in processes"].append(time.perf_counter() - start)
    pool.close()
    base = statistics.median(times["one encoder"])
    return {name: {"fps": round(len(frames) / statistics.median(t), 1),
                   "ratio_to_one": round(base / statistics.median(t), 2)} for name, t in times.items()}


def sweep(frames, info, folder: Path, presets, crfs) -> list[dict]:
    rows = []
    for preset in presets:
        for crf in crfs:
            path = folder / f"sweep-{preset}-{crf}.mp4"
            row = {"preset": preset, "crf": crf, **encode(frames, info, path, crf=crf, preset=preset)}
            row["psnr_db"] = round(statistics.mean(psnr(frames, path)), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def joins(frames, info, folder: Path, encoders: int) -> dict:
    """PSNR against the stylized frames at each chunk's first frame against the others (ChunkedSink)."""
    from rtstyle.config import ConvertConfig
    from rtstyle.io.sources import Frame
    from rtstyle.jobs.encoders import ChunkedSink

    path = folder / "joined.mp4"
    parts = folder / "parts"
    parts.mkdir(exist_ok=True)
    sink = ChunkedSink(CLIP, path, info, ConvertConfig(copy_audio=False), encoders, parts)
    for index, image in enumerate(frames):
        sink.write(Frame(image, index, index), image)
    sink.close()
    values = psnr(frames, path)
    seconds = len(frames) / float(info.rate)
    firsts = set(range(sink.chunk_frames, len(frames), sink.chunk_frames))
    at = [v for i, v in enumerate(values) if i in firsts]
    rest = [v for i, v in enumerate(values) if i not in firsts and i]
    one = folder / "one-joins.mp4"
    encode(frames, info, one)
    single = psnr(frames, one)
    return {"chunk_frames": sink.chunk_frames, "joins": len(at), "psnr_at_joins_db": round(statistics.mean(at), 2),
            "psnr_elsewhere_db": round(statistics.mean(rest), 2),
            "psnr_one_encoder_same_frames_db": round(statistics.mean([single[i] for i in sorted(firsts)]), 2),
            "psnr_one_encoder_all_db": round(statistics.mean(single), 2),
            "psnr_chunked_all_db": round(statistics.mean(values), 2),
            "mbit_s_chunked": round(path.stat().st_size * 8 / seconds / 1e6, 2),
            "mbit_s_one_encoder": round(one.stat().st_size * 8 / seconds / 1e6, 2)}


def end_to_end(src: Path, folder: Path, stylizer, label: str, counts: list[int], rounds: int,
               max_side: int | None = None) -> list[dict]:
    """File to file through convert_file, each encoder count in turn, `rounds` times; median fps."""
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file

    fps: dict[int, list[float]] = {n: [] for n in counts}
    sizes = {}
    for _ in range(rounds):
        for n in counts:
            out = folder / f"e2e-{label}-{n}.mp4"
            result = convert_file(src, out, stylizer, ConvertConfig(encoders=n, max_side=max_side))
            fps[n].append(result.fps)
            sizes[n] = out.stat().st_size
            out.unlink()
    base = statistics.median(fps[counts[0]])
    return [{"stylizer": label, "encoders": n, "fps": round(statistics.median(fps[n]), 1),
             "ratio_to_one": round(statistics.median(fps[n]) / base, 2), "mb": round(sizes[n] / 1e6, 2)}
            for n in counts]


def invert(images):
    return [255 - image for image in images]


def enlarge_clip(src: Path, size: tuple[int, int], folder: Path, frames: int | None = None) -> Path:
    """The clip at `size` (x264 crf 12) with its audio, for the end-to-end runs; `frames`: played again
    from the start until that many are written (constant rate; the audio covers the first pass)."""
    import cv2

    from rtstyle.io.video import VideoReader, VideoWriter

    out = folder / f"clip-{size[0]}x{size[1]}.mp4"
    with VideoReader(src) as reader:
        info = reader.info
        upright = [cv2.resize(frame.image, size, interpolation=cv2.INTER_CUBIC) for frame in reader]
    step = round(1 / (info.rate * info.time_base))  # ticks of the time base per frame
    writer = VideoWriter(out, replace(info, width=size[0], height=size[1], rotation=0), crf=12)
    for index in range(frames or len(upright)):
        writer.write(upright[index % len(upright)], index * step)
    writer.close()
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for preset in sorted({r["preset"] for r in rows}, key=[r["preset"] for r in rows].index):
        mine = [r for r in rows if r["preset"] == preset]
        left.plot([r["mbit_s"] for r in mine], [r["psnr_db"] for r in mine], "o-", label=preset)
        for r in mine:
            left.annotate(f"crf {r['crf']}", (r["mbit_s"], r["psnr_db"]), fontsize=7)
        right.plot([r["crf"] for r in mine], [r["fps"] for r in mine], "o-", label=preset)
    left.set(xlabel="Mbit/s", ylabel="PSNR to the stylized frames (dB)", title="size against quality")
    right.set(xlabel="crf", ylabel="encoder fps (this machine)", title="speed")
    left.legend()
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def report(summary: dict) -> str:
    s = summary
    size = f"{s['width']}x{s['height']}"
    lines = [f"# The encoder on what rtstyle writes ({size}, {s['frames']} frames, {s['machine']})", "",
             f"`{s['command']}`. Stylized once by the {s['model']} model ({s['style']}); every encode below is "
             "libx264 through rtstyle's VideoWriter (its RGB to YUV conversion included), median where repeated.", "",
             "## Stages alone", "", "| stage | fps | MB | Mbit/s |", "|---|---:|---:|---:|"]
    st = s["stages"]
    lines += [f"| decode (RGB out) | {st['decode_fps']:.1f} | | |",
              f"| stylize, host memory in and out | {st['stylize_fps']:.1f} | | |"]
    for name, row in st["encode"].items():
        lines.append(f"| encode: {name} | {row['fps']:.1f} | {row['mb']} | {row['mbit_s']} |")
    lines += ["", "## Two encoders: threads or processes", "", "One encoder (x264's own threads) against two, each on",
              "half the frames with x264 threads = cores / 2; alternating rounds.", "",
              "| frames handed over | how | fps | ratio to one |", "|---|---|---:|---:|"]
    lines += [f"| {given} | {name} | {row['fps']} | {row['ratio_to_one']} |"
              for given, rows in s["threads_vs_processes"].items() for name, row in rows.items()]
    j = s["joins"]
    lines += ["", "## Joins", "", f"Chunks of {j['chunk_frames']} frames, {j['joins']} joins: PSNR to the stylized "
              f"frames {j['psnr_at_joins_db']} dB at a chunk's first frame, {j['psnr_elsewhere_db']} dB elsewhere; "
              f"one encoder: {j['psnr_one_encoder_same_frames_db']} dB on the same frames, "
              f"{j['psnr_one_encoder_all_db']} dB over all. Over all frames, chunked: {j['psnr_chunked_all_db']} dB at "
              f"{j['mbit_s_chunked']} Mbit/s; one encoder: {j['psnr_one_encoder_all_db']} dB at "
              f"{j['mbit_s_one_encoder']} Mbit/s (the parts are encoded without x264's macroblock tree, so that "
              "the joins do not show).", "",
              "## File to file (`convert_file`, audio copied)", "", "| stylizer | encoders | fps | ratio to one | MB |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['stylizer']} | {r['encoders']} | {r['fps']} | {r['ratio_to_one']} | {r['mb']} |"
              for r in s["end_to_end"]]
    lines += ["", "## crf and preset", "", "| preset | crf | fps | Mbit/s | PSNR dB |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['preset']} | {r['crf']} | {r['fps']} | {r['mbit_s']} | {r['psnr_db']} |" for r in s["sweep"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1280x720", help="WxH the clip is enlarged to (default 1280x720)")
    parser.add_argument("--model", default="fast")
    parser.add_argument("--style", default="mosaic")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smaller sweep, one round (a check of the script)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from rtstyle.api import load_stylizer
    from rtstyle.model.styles import StyleChoice

    size = tuple(int(v) for v in args.size.split("x"))
    rounds = 1 if args.quick else args.rounds
    stylizer = load_stylizer(args.model, StyleChoice({args.style: 1.0}))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frames, info, decode_fps = source_frames(CLIP, size)
        styled, stylize_fps = stylize_all(frames, stylizer, getattr(stylizer, "preferred_batch", 1))
        encoded = {"stylized frames, from RGB (the CPU path)": encode(styled, info, folder / "a.mp4"),
                   "stylized frames, from yuv420p planes (the GPU path)":
                       encode(to_yuv420p(styled, info), replace(info), folder / "b.mp4"),
                   "the source frames": encode(frames, info, folder / "c.mp4"),
                   "the first stylized frame, repeated (what the old benchmark timed)":
                       encode([styled[0]] * len(styled), info, folder / "d.mp4")}
        for name, row in encoded.items():
            print(name, json.dumps(row), flush=True)
        summary = {"command": "python benchmarks/encoders.py " + " ".join(sys.argv[1:]),
                   "machine": f"{multiprocessing.cpu_count()}-core {sys.platform} CPU, no GPU",
                   "width": info.width, "height": info.height, "frames": len(frames), "model": args.model,
                   "style": args.style,
                   "stages": {"decode_fps": round(decode_fps, 1), "stylize_fps": round(stylize_fps, 1),
                              "encode": encoded}}
        summary["threads_vs_processes"] = {
            "from RGB": threads_vs_processes(styled, info, folder, rounds),
            "from yuv420p": threads_vs_processes(to_yuv420p(styled, info), info, folder, rounds)}
        print(json.dumps(summary["threads_vs_processes"]), flush=True)
        summary["joins"] = joins(styled, info, folder, 2)
        print(json.dumps(summary["joins"]), flush=True)
        clip = enlarge_clip(CLIP, size, folder)
        summary["end_to_end"] = (end_to_end(clip, folder, invert, "none (inverted pixels: the encoder bounds)",
                                            [1, 2], rounds)
                                 + end_to_end(clip, folder, stylizer, f"{args.model} model on this CPU", [1, 2],
                                              1))
        print(json.dumps(summary["end_to_end"]), flush=True)
        presets = ("veryfast", "medium") if args.quick else ("superfast", "veryfast", "faster", "medium")
        crfs = (18, 23) if args.quick else (16, 18, 20, 23, 26)
        summary["sweep"] = sweep(styled, info, folder, presets, crfs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "encoders.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "encoders.md").write_text(report(summary))
    plot(summary["sweep"], args.out / "encoders.png")
    print(report(summary))


if __name__ == "__main__":
    main()
