"""Two ways to run an unmerged LoRA conv, timed as a training step (forward, backward, AdamW).

* ``a_then_b``: the textbook form, base conv plus A (k x k conv) then B (1x1 conv) over the
  feature map: two extra convolutions per adapted layer, paid per pixel.
* ``delta_kernel``: what `rtstyle.model.lora.LoRAConv2d` does: add scaling * B @ A to the base
  kernel and convolve once; the extra work is per weight, not per pixel.

Both give the same output (tests/test_adapters.py checks it). The two are alternated in one
process and the median step time of each is reported, with the ratio.

Run: python benchmarks/lora_forward.py [--device cpu|cuda]
Writes benchmarks/results/lora_forward_<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rtstyle.model.loader import load_base
from rtstyle.model.lora import LoRAConv2d
from rtstyle.train.trainer import TrainConfig, attach_trainable

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def a_then_b_forward(self: LoRAConv2d, x: torch.Tensor) -> torch.Tensor:
    out = self.base(x)
    for name, weight in self.mix.items():
        out = out + (weight * self.scaling(name)) * self.lora_B[name](self.lora_A[name](x))
    return out


FORWARDS = {"a_then_b": a_then_b_forward, "delta_kernel": LoRAConv2d.forward}


def time_steps(model: str, device: torch.device, batch: int, size: int, rounds: int, steps: int) -> dict[str, float]:
    net = load_base(model).build()
    config = TrainConfig(style_dir=Path("."), content_dir=Path("."), out=Path("unused.safetensors"), model=model)
    params = attach_trainable(net, config)
    net.to(device).train()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x, y = torch.rand(batch, 3, size, size, device=device), torch.rand(batch, 3, size, size, device=device)

    def step() -> None:
        loss = F.l1_loss(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    times: dict[str, list[float]] = {label: [] for label in FORWARDS}
    try:
        for _ in range(rounds):
            for label, forward in FORWARDS.items():
                LoRAConv2d.forward = forward
                step()  # warm-up after switching
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                for _ in range(steps):
                    step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[label].append((time.perf_counter() - started) / steps)
    finally:
        LoRAConv2d.forward = FORWARDS["delta_kernel"]
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for model in ("fast", "quality"):
        median = time_steps(model, device, args.batch, args.size, args.rounds, args.steps)
        row = {"model": model, "batch": args.batch, "size": args.size, "rank": TrainConfig.rank,
               **{f"{label}_ms": round(1000 * t, 1) for label, t in median.items()},
               **{f"{label}_images_per_second": round(args.batch / t, 1) for label, t in median.items()},
               "speedup": round(median["a_then_b"] / median["delta_kernel"], 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    report = {"device": name, "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "rows": rows,
              "command": f"python benchmarks/lora_forward.py --device {args.device}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"lora_forward_{device.type}.json").write_text(json.dumps(report, indent=2))
    lines = [f"LoRA training step (forward, backward, AdamW) on {name} ({report['torch_threads']} threads), "
             f"batch {args.batch} x {args.size} px, default rank; median of {args.rounds} rounds of {args.steps} "
             "steps, the two forms alternated in one process.", "",
             "| model | A-then-B ms/step | delta-kernel ms/step | images/s before -> after | speedup |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['a_then_b_ms']} | {r['delta_kernel_ms']} | "
              f"{r['a_then_b_images_per_second']} -> {r['delta_kernel_images_per_second']} | {r['speedup']}x |"
              for r in rows]
    (RESULTS / f"lora_forward_{device.type}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
