"""What bounds the stylizers on a GPU: FLOPs and memory traffic per frame against a device's peaks.

An estimate, not a measurement. Every aten op of the real network is recorded on meta tensors
(no compute, any size), then counted two ways:

* op by op: every op reads its inputs and writes its output (eager PyTorch, unfused);
* fused: only convolutions and instance norms touch memory (pad, ReLU, residual add, upsample and
  sigmoid folded into them, as an engine like TensorRT can); a conv reads its padded input and
  writes its output, a norm reads its input twice (statistics, then normalise) and writes once.

FLOPs are 2 x multiply-adds of the convolutions, as written and with channels rounded up to
multiples of 8, the granularity of FP16 tensor-core tiles (a 3-channel input costs like 8).
Device peaks are spec-sheet numbers (dense FP16 tensor TFLOP/s, memory GB/s), overridable.

Run: python benchmarks/roofline.py    Writes benchmarks/results/roofline.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rtstyle.model.loader import load_base

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
#: name -> (dense FP16 tensor-core TFLOP/s, memory GB/s), from NVIDIA's data sheets.
DEVICES = {"H100 SXM": (989.0, 3350.0), "H100 PCIe": (756.0, 2000.0), "H200": (989.0, 4800.0)}
FREE_OPS = {"aten.view.default", "aten.empty.memory_format", "aten.repeat.default"}  # no traffic worth counting


class OpRecorder(TorchDispatchMode):
    """Records (op, input shapes, output shapes) of every aten call."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, list[tuple[int, ...]], list[tuple[int, ...]]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        self.ops.append((str(func), [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)],
                         [tuple(o.shape) for o in outputs if isinstance(o, torch.Tensor)]))
        return out


def round8(channels: int) -> int:
    return -(-channels // 8) * 8


def count(model: str, batch: int, height: int, width: int, element_bytes: int = 2) -> dict:
    net = load_base(model).build().to(device="meta", dtype=torch.float16)
    frames = torch.empty(batch, 3, height, width, device="meta", dtype=torch.float16)
    with OpRecorder() as recorder, torch.no_grad():
        net.transform(frames)
    flops = padded_flops = op_by_op = fused = 0
    for op, inputs, outputs in recorder.ops:
        if op in FREE_OPS:
            continue
        activation_in, activation_out = math.prod(inputs[0]), math.prod(outputs[0])
        op_by_op += sum(math.prod(s) for s in inputs) + sum(math.prod(s) for s in outputs)
        if op == "aten.convolution.default":
            cout, cin, kh, kw = inputs[1]
            pixels = activation_out // cout
            flops += 2 * pixels * cout * cin * kh * kw
            padded_flops += 2 * pixels * round8(cout) * round8(cin) * kh * kw
            fused += activation_in + activation_out
        elif op == "aten.native_batch_norm.default":
            op_by_op += activation_in  # the statistics pass reads the input once more
            fused += 2 * activation_in + activation_out
    per_frame = 1 / batch
    return {"model": model, "batch": batch, "height": height, "width": width,
            "gflop": flops * per_frame / 1e9, "gflop_tensor_core_tiles": padded_flops * per_frame / 1e9,
            "gb_op_by_op": op_by_op * element_bytes * per_frame / 1e9,
            "gb_fused": fused * element_bytes * per_frame / 1e9}


def ceilings(row: dict, tflops: float, gbps: float) -> dict:
    """Upper bounds on frames per second from compute and from memory traffic alone."""
    return {"fps_compute": tflops * 1e3 / row["gflop_tensor_core_tiles"], "fps_memory_fused": gbps / row["gb_fused"],
            "fps_memory_op_by_op": gbps / row["gb_op_by_op"],
            "intensity_fused": row["gflop_tensor_core_tiles"] / row["gb_fused"], "ridge": tflops * 1e3 / gbps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT")
    parser.add_argument("--target-fps", type=float, default=200.0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    rows = [count(model, args.batch, height, width) for model in ("quality", "fast")]
    lines = [f"Estimate, not a measurement: per frame at {width}x{height}, batch {args.batch}, FP16 (2 bytes per "
             "value); device peaks from NVIDIA data sheets. 'fused' counts only conv and instance-norm memory "
             "traffic; 'op by op' counts every op's reads and writes.", "",
             "| model | GFLOP | GFLOP, tensor-core tiles | GB fused | GB op by op | FLOP/byte fused |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['gflop']:.1f} | {row['gflop_tensor_core_tiles']:.1f} | "
                     f"{row['gb_fused']:.2f} | {row['gb_op_by_op']:.2f} | "
                     f"{row['gflop_tensor_core_tiles'] / row['gb_fused']:.0f} |")
    lines += ["", "| model | device | ridge FLOP/byte | fps ceiling, compute | fps ceiling, memory fused | "
              f"fps ceiling, memory op by op | share of peak FLOP/s for {args.target_fps:g} fps | "
              f"share of bandwidth for {args.target_fps:g} fps (fused) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        row["devices"] = {}
        for device, (tflops, gbps) in DEVICES.items():
            bound = row["devices"][device] = ceilings(row, tflops, gbps)
            lines.append(f"| {row['model']} | {device} | {bound['ridge']:.0f} | {bound['fps_compute']:.0f} | "
                         f"{bound['fps_memory_fused']:.0f} | {bound['fps_memory_op_by_op']:.0f} | "
                         f"{100 * args.target_fps / bound['fps_compute']:.1f}% | "
                         f"{100 * args.target_fps / bound['fps_memory_fused']:.0f}% |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "roofline.json").write_text(json.dumps({"devices": DEVICES, "target_fps": args.target_fps,
                                                       "rows": rows}, indent=2))
    (RESULTS / "roofline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
