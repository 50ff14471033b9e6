"""Training throughput: images per second per mode and model on this machine.

Runs `rtstyle train` for a few steps per setting (after a warm-up run of the same setting) and
reports images/s from the trainer's own count. Perceptual mode needs ImageNet VGG weights, which
this machine cannot download; it is timed with torchvision's VGG16 architecture and random
weights, which costs exactly the same compute (the speed does not depend on the weight values).

Run: python benchmarks/training.py [--device cpu|cuda]
Writes benchmarks/results/training_<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch
import torchvision

from rtstyle.train.losses import VGG_LAYERS, FeatureNet
from rtstyle.train.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    vgg = FeatureNet(torchvision.models.vgg16(weights=None).features, VGG_LAYERS["vgg16"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("distill", "perceptual"):
            for model in ("fast", "quality"):
                config = TrainConfig(style_dir=DATA / "styles_set" / "hiroshige_tokaido", content_dir=DATA / "content",
                                     out=Path(tmp) / f"{mode}-{model}.safetensors", mode=mode, model=model,
                                     steps=args.steps, batch=args.batch, size=args.size, device=args.device,
                                     sample_every=0, checkpoint_every=10**9, pool=32)
                network = vgg if mode == "perceptual" else None
                train(TrainConfig(**{**config.__dict__, "steps": 3}), loss_network=network)  # warm-up
                result = train(config, loss_network=network)
                row = {"mode": mode, "model": model, "batch": args.batch, "size": args.size,
                       "images_per_second": round(result.images_per_second, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.machine()} CPU"
    report = {"device": device, "torch_threads": torch.get_num_threads(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = "cuda" if args.device == "cuda" else "cpu"
    (RESULTS / f"training_{kind}.json").write_text(json.dumps(report, indent=2))
    lines = [f"Training throughput on {device} ({report['torch_threads']} threads), {args.steps} steps after a "
             "warm-up; distill mode excludes making the teacher pool; perceptual mode uses VGG16 (random weights, "
             "same compute).", "", "| mode | model | batch | crop | images/s |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['mode']} | {r['model']} | {r['batch']} | {r['size']} | {r['images_per_second']:.1f} |"
              for r in rows]
    (RESULTS / f"training_{kind}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
