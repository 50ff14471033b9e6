"""Make steadier twins of built-in styles: `<style>-steady`, trained with the temporal term.

A style network paints each frame on its own; in the busiest styles the brush texture changes so
much from frame to frame that no smoother can take 70 % of the flicker away without moving the
picture more than its drift budget (docs/smoothing.md). Here the style is taught to be steady by
itself: a copy of the base with the style's norm deltas and a fresh LoRA update on every conv is
trained so that

* its output matches the original style's (MSE against base + style, the teacher), and
* the output of a frame moved by a small known motion matches its output moved by that motion
  (the temporal term of `rtstyle train --temporal-weight`: Ruder et al. 2016, ReCoNet 2018).

The result is an ordinary adapter file beside the original, so both stay available: the original
for pictures, the twin for video. Training content is the frames of ../shared/data/frames and the
paintings of ../shared/data/styles, as for the fast styles; ../shared/data/content stays unseen, so
benchmarks/steady_styles.py measures on held-out photos.

Run: python tools/steady_styles.py [--styles NAME ...] [--steps 250]   (~7 min a style on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
import torch.nn.functional as F
from refine_fast_styles import ALPHA, lora_student, training_images

from rtstyle.model.loader import fuse, load_base, trained_adapter
from rtstyle.model.styles import load_style, styles_dir
from rtstyle.train.data import RandomCrops
from rtstyle.train.losses import synthetic_motion, temporal_loss

log = logging.getLogger("steady_styles")

WARMUP, CLIP = 30, 1.0
METHOD = "steadied: LoRA fine-tune against the style's own output with the temporal term"
#: The styles whose flicker the default smoother cannot take down to 0.3 within its drift budget
#: (benchmarks/results/temporal.md), all of the quality model.
DEFAULT_STYLES = ("night-brush", "stained-glass", "abstract-strokes")


def steady(name: str, model: str, images: list, args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    original = load_style(name, model)
    if original.lora:
        raise SystemExit(f"{name} ({model}) already has a LoRA update; only norm-only styles are supported")
    base = load_base(model)
    teacher = fuse(base, [(original, 1.0)]).eval().requires_grad_(False)
    student, params, optimizer, schedule = lora_student(base, original, args.rank, args.lr, args.steps, WARMUP)
    crops = RandomCrops(images, args.size, seed=args.seed)
    motion = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    for step in range(args.steps):
        first = crops.batch(args.batch)
        second, grid, valid = synthetic_motion(first, generator=motion)
        both = torch.cat([first, second])
        with torch.no_grad():
            targets = teacher(both)
        outputs = student(both)
        fidelity = F.mse_loss(outputs, targets)
        temporal = temporal_loss(outputs[:args.batch], outputs[args.batch:], grid, valid)
        loss = fidelity + args.temporal_weight * temporal
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            log.info("%s step %d: fidelity %.5f temporal %.5f", name, step, fidelity.item(), temporal.item())
    steady_name = f"{name}-steady"
    training = {"method": METHOD, "original": name, "steps": args.steps, "batch": args.batch, "size": args.size,
                "rank": args.rank, "lr": args.lr, "temporal_weight": args.temporal_weight,
                "content": "shared/data/frames + shared/data/styles", "final_fidelity": round(fidelity.item(), 6),
                "final_temporal": round(temporal.item(), 6)}
    adapter = trained_adapter(student, base, steady_name, ALPHA, training)
    adapter.description = f"{original.description}; steadier in video (less flicker, slightly softer texture)"
    # Not the teacher's style any more, so no "teacher_style" index: the original it came from instead.
    kept = {key: value for key, value in original.provenance.items() if key != "teacher_style"}
    adapter.provenance = {**kept, "steadied_from": name,
                          "method": f"{original.provenance.get('method', '')}; {METHOD}"}
    adapter.save(styles_dir(model) / f"{steady_name}.safetensors")
    log.info("%s: made in %.0f s", steady_name, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="quality")
    parser.add_argument("--styles", nargs="+", default=list(DEFAULT_STYLES))
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--temporal-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    images = training_images()
    for name in args.styles:
        steady(name, args.model, images, args)


if __name__ == "__main__":
    main()
