"""Train a style adapter from a folder of style images."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ..config import DEVICES
from ..errors import InputError
from ..train.config import DEFAULT_LR, MODES, PerceptualWeights, TrainConfig
from .common import (
    positive_float,
    positive_int,
)
from .overwrite import add_overwrite_options, may_write


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train a style adapter from a folder of style images",
                           description="Train a LoRA style adapter on a frozen base model. The result works at once "
                                       "in stylize, webcam and export (--style FILE).")
    train.add_argument("--style-dir", required=True, help="folder of images of one style (50-100 is plenty)")
    train.add_argument("--content-dir", required=True, help="folder of photos and/or videos to learn on")
    train.add_argument("--out", required=True, help="adapter file to write (NAME.safetensors)")
    train.add_argument("--mode", choices=MODES, default=TrainConfig.mode,
                       help="distill: from the arbitrary-style teacher, works offline (default); "
                            "perceptual: VGG losses, needs ImageNet VGG weights")
    train.add_argument("--model", default=TrainConfig.model,
                       help="base model the adapter is for (default: %(default)s)")
    train.add_argument("--rank", type=positive_int, default=TrainConfig.rank,
                       help="LoRA rank of each conv (default: %(default)s)")
    train.add_argument("--alpha", type=positive_float, default=TrainConfig.alpha,
                       help="LoRA scale: the update is alpha / rank times B A (default: %(default)s)")
    train.add_argument("--steps", type=positive_int, default=TrainConfig.steps,
                       help="optimizer steps (default: %(default)s)")
    train.add_argument("--batch", type=positive_int, default=TrainConfig.batch,
                       help="crops per step (default: %(default)s)")
    train.add_argument("--size", type=positive_int, default=TrainConfig.size,
                       help="training crop size in pixels (default: %(default)s)")
    train.add_argument("--lr", type=positive_float,
                       help="learning rate (default: {})".format(
                           ", ".join(f"{lr:g} {mode}" for mode, lr in DEFAULT_LR.items())))
    train.add_argument("--content-weight", type=float, default=PerceptualWeights.content,
                       help="perceptual: content loss weight (default: %(default)s)")
    train.add_argument("--style-weight", type=float, default=PerceptualWeights.style,
                       help="perceptual: Gram style loss weight (default: %(default)s)")
    train.add_argument("--tv-weight", type=float, default=PerceptualWeights.tv,
                       help="total variation weight (default: %(default)s)")
    train.add_argument("--contrastive-weight", type=float, default=PerceptualWeights.contrastive,
                       help="perceptual: contrastive style loss weight (default: %(default)s)")
    train.add_argument("--pixel-loss", choices=("mse", "l1"), default=TrainConfig.pixel_loss,
                       help="distill: pixel loss to the teacher (default: %(default)s)")
    train.add_argument("--feature-weight", type=float, default=TrainConfig.feature_weight,
                       help="distill: VGG feature loss weight (default: %(default)s)")
    train.add_argument("--face-weight", type=float, default=TrainConfig.face_weight,
                       help="the face term: faces found in the crops keep their shape, so the adapter leaves "
                            "them recognisable (try 1-5; default: 0, off)")
    train.add_argument("--temporal-weight", type=float, default=TrainConfig.temporal_weight,
                       help="temporal loss on synthetic motion against flicker; a step takes 2-3x as long "
                            "(default: %(default)s)")
    train.add_argument("--vgg", choices=("vgg16", "vgg19"), default=TrainConfig.vgg,
                       help="loss network (default: %(default)s)")
    train.add_argument("--vgg-weights", help="ImageNet VGG state dict file (else torchvision's cache)")
    train.add_argument("--pool", type=positive_int, default=TrainConfig.pool,
                       help="distill: teacher targets made up front (default: %(default)s)")
    train.add_argument("--checkpoint-every", type=positive_int, default=TrainConfig.checkpoint_every,
                       help="write OUT.ckpt.pt every N steps (default: %(default)s)")
    train.add_argument("--sample-every", type=int, default=TrainConfig.sample_every,
                       help="write a sample PNG every N steps (0: never; default: %(default)s)")
    train.add_argument("--resume", action="store_true", help="continue from OUT.ckpt.pt")
    add_overwrite_options(train)  # without --resume, an existing OUT or OUT.ckpt.pt
    train.add_argument("--stop-after", type=positive_int, help="stop this run after N steps (resume later)")
    train.add_argument("--report", action="store_true", help="only check the style folder for outlier images")
    train.add_argument("--device", choices=DEVICES, default=TrainConfig.device,
                       help="default: cuda if available, else cpu")
    train.add_argument("--seed", type=int, default=TrainConfig.seed, help="random seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("torch") is None:  # the lean install: one line, not a ModuleNotFoundError
        raise InputError("train needs torch: pip install 'rtstyle[train]'")
    if not args.report and not _may_train_into(Path(args.out), args):
        return 0
    from tqdm import tqdm

    from ..train.trainer import style_report
    from ..train.trainer import train as run_training

    config = TrainConfig(
        style_dir=Path(args.style_dir), content_dir=Path(args.content_dir), out=Path(args.out), mode=args.mode,
        model=args.model, rank=args.rank, alpha=args.alpha, steps=args.steps, batch=args.batch, size=args.size,
        lr=args.lr, perceptual=PerceptualWeights(args.content_weight, args.style_weight, args.tv_weight,
                                                 args.contrastive_weight),
        pixel_loss=args.pixel_loss, feature_weight=args.feature_weight, temporal_weight=args.temporal_weight,
        face_weight=args.face_weight,
        vgg=args.vgg,
        vgg_weights=Path(args.vgg_weights) if args.vgg_weights else None, pool=args.pool,
        checkpoint_every=args.checkpoint_every, sample_every=args.sample_every, resume=args.resume,
        stop_after=args.stop_after,
        device=args.device, seed=args.seed)
    if args.report:
        rows = style_report(config.style_dir, config)
        for row in rows:
            flag = "  <- outlier" if row["outlier"] else ""
            print(f"{row['z']:6.2f}  {row['image']}{flag}")
        return 0
    bar = tqdm(total=config.steps, unit="step", dynamic_ncols=True, file=sys.stderr, disable=None)

    def progress(step: int, total: int, terms: dict[str, float], rate: float) -> None:
        bar.n = step
        bar.set_postfix({**{k: f"{v:.4f}" for k, v in terms.items()}, "img/s": f"{rate:.1f}"}, refresh=False)
        bar.refresh()

    try:
        result = run_training(config, progress)
    finally:
        bar.close()
    print(f"wrote {result.adapter} ({result.steps} steps, {result.seconds:.0f} s, {result.images_per_second:.1f} "
          f"images/s); summary in {result.summary}")
    return 0



def _may_train_into(out: Path, args: argparse.Namespace) -> bool:
    """-y/-n for the adapter and, without --resume, for a checkpoint a run would start over (-y removes it)."""
    checkpoint = out.with_suffix(".ckpt.pt")
    if not args.resume:
        if not may_write(checkpoint, args.overwrite, args.no_overwrite, "a training run to --resume",
                         "--resume continues it, -y starts over"):
            return False
        checkpoint.unlink(missing_ok=True)  # starting over: a later --resume must not pick up the old run
    return args.resume or may_write(out, args.overwrite, args.no_overwrite)
