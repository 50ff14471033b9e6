"""INT8 on CPU: does ONNX Runtime static quantization make the stylizers faster, and what does it cost?

Each model (fused with one built-in style) is exported as for the `onnx` backend, then quantized
statically (per-channel int8 weights, uint8 activations, calibrated on the frames of
../shared/data/frames) in both of ONNX Runtime's formats: QOperator (QLinearConv) and QDQ.
Speed: fp32 and int8 sessions timed alternately in one run (median, warm-up excluded). Quality:
PSNR of the int8 output against the fp32 one on the 16 photos of ../shared/data/content.

Run: python benchmarks/int8.py    Writes benchmarks/results/int8_cpu.{json,md}.
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
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from PIL import Image

from rtstyle.backends.onnx_export import export_onnx
from rtstyle.model.loader import fuse, load_base
from rtstyle.model.spec import INPUT
from rtstyle.model.styles import load_style
from rtstyle.runtime_info import runtime_info

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
STYLE = "starry-swirl"
FORMATS = {"int8 QOperator": QuantFormat.QOperator, "int8 QDQ": QuantFormat.QDQ}


def load_images(paths: list[Path], height: int, width: int) -> np.ndarray:
    images = [np.asarray(Image.open(p).convert("RGB").resize((width, height), Image.BILINEAR), np.float32)
              for p in paths]
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2) / 255)


class Calibration(CalibrationDataReader):
    def __init__(self, frames: np.ndarray):
        self.frames = iter(frames)

    def get_next(self) -> dict | None:
        frame = next(self.frames, None)
        return None if frame is None else {INPUT: frame[None]}


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return 10 * np.log10(1 / mse) if mse > 0 else float("inf")


def measure(model: str, args: argparse.Namespace, workdir: Path) -> list[dict]:
    fp32_path = workdir / f"{model}.onnx"
    fp32_path.write_bytes(export_onnx(fuse(load_base(model), [(load_style(STYLE, model), 1.0)])))
    calibration = load_images(sorted(DATA.glob("frames/*/*.png"))[:16], args.height, args.width)
    paths = {"fp32": fp32_path}
    for name, quant_format in FORMATS.items():
        paths[name] = workdir / f"{model}-{quant_format.name}.onnx"
        quantize_static(fp32_path, paths[name], Calibration(calibration), quant_format=quant_format,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    sessions = {name: session(path, args.threads) for name, path in paths.items()}
    photos = load_images(sorted(DATA.glob("content/*")), args.height, args.width)
    reference = sessions["fp32"].run(None, {INPUT: photos})[0]
    batch = photos[:args.batch]
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for s in sessions.values():
        s.run(None, {INPUT: batch})
    for _ in range(args.repeats):  # alternate, so drift on a noisy machine hits every variant alike
        for name, s in sessions.items():
            start = time.perf_counter()
            s.run(None, {INPUT: batch})
            times[name].append(time.perf_counter() - start)
    fp32_ms = 1000 * statistics.median(times["fp32"]) / args.batch
    rows = []
    for name, s in sessions.items():
        ms = 1000 * statistics.median(times[name]) / args.batch
        quality = psnr(s.run(None, {INPUT: photos})[0], reference) if name != "fp32" else None
        rows.append({"model": model, "variant": name, "ms_per_frame": ms, "speedup_vs_fp32": fp32_ms / ms,
                     "psnr_vs_fp32_db": quality, "file_mb": paths[name].stat().st_size / 2**20})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = [f"ONNX Runtime {report['runtime'].get('onnxruntime', '?')} on {report['device']}, {report['threads']} "
             f"threads, style {report['style']}, {report['size']} batch {report['batch']}; median of "
             f"{report['repeats']} alternating runs. PSNR: int8 vs fp32 output, 16 photos of shared/data/content.",
             "", "| model | variant | ms/frame | speed vs fp32 | PSNR vs fp32 (dB) | file MB |",
             "|---|---|---:|---:|---:|---:|"]
    for r in report["rows"]:
        quality = f"{r['psnr_vs_fp32_db']:.1f}" if r["psnr_vs_fp32_db"] is not None else ""
        lines.append(f"| {r['model']} | {r['variant']} | {r['ms_per_frame']:.1f} | {r['speedup_vs_fp32']:.2f}x | "
                     f"{quality} | {r['file_mb']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["quality", "fast"])
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        rows = [row for model in args.models for row in measure(model, args, Path(workdir))]
    report = {"device": f"{platform.machine()} CPU, {os.cpu_count()} cores", "runtime": runtime_info(),
              "threads": args.threads, "style": STYLE, "size": f"{args.width}x{args.height}", "batch": args.batch,
              "repeats": args.repeats, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8_cpu.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "int8_cpu.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
