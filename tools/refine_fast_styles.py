"""Refine the fast model's built-in styles with LoRA, each against its quality-model teacher.

distill_fast.py gives every fast style only its own norm scales and shifts on top of conv weights
that all 26 styles share; that alone leaves the styles 13-28 dB from their teacher. Here each
style keeps its norm deltas as the starting point and also gets a LoRA update on every conv
(thin convs at the largest rank they hold, as in `rtstyle train`), trained with MSE against the
quality model wearing the same style. The adapter format does not change, only what is in it.

Training content is the frames of ../shared/data/frames and the paintings of ../shared/data/styles;
../shared/data/content stays unseen, so benchmarks/styles_vs_teacher.py measures held-out photos.
A style whose adapter already says it was refined is skipped (the run can be stopped and rerun).

Run: python tools/refine_fast_styles.py [--styles NAME ...] [--steps 1000]   (~3.5 min a style on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from teachers import original_style

from rtstyle.model.loader import add_trainable_adapter, fuse, load_base, start_from_norms, trained_adapter
from rtstyle.model.styles import builtin_styles, load_style, styles_dir
from rtstyle.train.data import RandomCrops
from rtstyle.train.trainer import cosine_with_warmup

ALPHA, WARMUP, CLIP = 16.0, 100, 1.0  # `rtstyle train`'s defaults, which the committed styles were refined with
log = logging.getLogger("refine_fast_styles")
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
METHOD = "LoRA refinement against the quality model"


def training_images(max_side: int = 512) -> list[np.ndarray]:
    paths = sorted(DATA.glob("frames/*/*.png")) + sorted(DATA.glob("styles/*"))
    if not paths:
        raise SystemExit(f"no training images under {DATA}")
    images = []
    for path in paths:
        image = Image.open(path).convert("RGB")
        image.thumbnail((max_side, max_side), Image.LANCZOS)
        images.append(np.array(image))
    return images


def lora_student(base, start, rank: int, lr: float, steps: int, warmup: int, norms_only: bool = False) -> tuple:
    """(student, its trainable parameters, optimizer, schedule): the base with `start`'s norm deltas
    and a fresh LoRA update on every conv (thin convs at the largest rank they hold), in training
    mode, under AdamW with a cosine schedule after `warmup` steps. steady_styles.py trains the same.
    With `norms_only`, the norm deltas alone are trained and the convs stay the base's."""
    student = base.build()
    convs = [] if norms_only else [name for name, m in student.named_modules() if isinstance(m, torch.nn.Conv2d)]
    params = add_trainable_adapter(student, convs, rank, ALPHA)
    start_from_norms(student, start)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(warmup, steps))
    student.train()
    return student, params, optimizer, schedule


def refine(name: str, images: list[np.ndarray], args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    start = load_style(name, "fast")
    if start.lora:
        log.info("%s: already refined, skipped", name)
        return
    teacher = fuse(load_base("quality"), [(original_style(name), 1.0)]).eval().requires_grad_(False)
    base = load_base("fast")
    student, params, optimizer, schedule = lora_student(base, start, args.rank, args.lr, args.steps, WARMUP)
    crops = RandomCrops(images, args.size, seed=args.seed)
    started = time.perf_counter()
    for _ in range(args.steps):
        inputs = crops.batch(args.batch)
        with torch.no_grad():
            targets = teacher(inputs)
        loss = F.mse_loss(student(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()
        schedule.step()
    training = {"method": METHOD, "steps": args.steps, "batch": args.batch, "size": args.size, "rank": args.rank,
                "lr": args.lr, "loss": "mse", "content": "shared/data/frames + shared/data/styles",
                "final_loss": round(loss.item(), 6)}
    adapter = trained_adapter(student, base, name, ALPHA, training)
    adapter.description = start.description
    adapter.provenance = {**start.provenance, "method": f"{start.provenance.get('method', '')}; {METHOD}"}
    adapter.save(styles_dir("fast") / f"{name}.safetensors")
    log.info("%s: refined in %.0f s, final loss %.5f", name, time.perf_counter() - started, loss.item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles", nargs="+", default=builtin_styles("fast"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1.5e-2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    images = training_images()
    for name in args.styles:
        refine(name, images, args)


if __name__ == "__main__":
    main()
