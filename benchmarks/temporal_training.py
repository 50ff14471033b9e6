"""Does the temporal training term make a network steady by itself?

Distills two adapters of the fast model with the same seed, data and steps (styles: 8 Hiroshige
prints from ../shared/data/styles_set, content: ../shared/data/content), one without and one with
`temporal_weight`, then stylizes the clips of benchmarks/temporal.py frame by frame (no smoother)
and reports per adapter: warp error (Farneback flow on the inputs, as there), the distance to the
teacher's stylization of the same frames (mean |difference| in 0..1, the style distance) and the
training speed.

Run: python benchmarks/temporal_training.py [--steps 150] [--weight 20]   (CPU: about 15 min)
Writes benchmarks/results/temporal_training.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from temporal import DATA, RESULTS, load_frames

from rtstyle.api import load_stylizer
from rtstyle.config import EngineConfig
from rtstyle.model.styles import StyleChoice
from rtstyle.temporal.metrics import pair_flows, warping_error_from
from rtstyle.train.data import load_folder, to_tensor
from rtstyle.train.teachers import ArbitraryStyleTeacher
from rtstyle.train.trainer import TrainConfig, train


def folders(root: Path) -> tuple[Path, Path]:
    styles, content = root / "styles", root / "content"
    styles.mkdir()
    content.mkdir()
    for path in sorted((DATA / "styles_set" / "hiroshige_tokaido").glob("*.jpg"))[:8]:
        shutil.copy(path, styles)
    for path in sorted((DATA / "content").glob("*.png")):
        shutil.copy(path, content)
    return styles, content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--weight", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    styles, content = folders(root)
    clips = load_frames(256, 8)
    flows = {name: pair_flows(frames, "farneback") for name, frames in clips.items()}
    teacher = ArbitraryStyleTeacher()
    vector = torch.cat([teacher.embed(to_tensor(s)[None])
                        for s in load_folder(styles, min_count=5, what="style images").images]).mean(0)
    targets = {}
    for name, frames in clips.items():
        out = teacher.stylize(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255, vector)
        targets[name] = (out.clamp(0, 1) * 255).permute(0, 2, 3, 1).numpy()
    report = {"steps": args.steps, "size": args.size, "batch": 2, "model": "fast", "clips": list(clips), "runs": {}}
    for weight in (0.0, args.weight):
        out = root / f"adapter_{weight:g}.safetensors"
        result = train(TrainConfig(style_dir=styles, content_dir=content, out=out, mode="distill", model="fast",
                                   steps=args.steps, batch=2, size=args.size, pool=64, sample_every=0,
                                   checkpoint_every=10**6, device="cpu", temporal_weight=weight, lr=5e-3,
                                   warmup=10))
        stylizer = load_stylizer("fast", StyleChoice({str(out): 1.0}), EngineConfig(backend="onnx", device="cpu"))
        errors, distances = [], []
        for name, frames in clips.items():
            styled = stylizer(frames)
            errors.append(warping_error_from(flows[name], styled))
            distances.append(float(np.mean(np.abs(np.stack(styled).astype(np.float32) - targets[name])) / 255))
        report["runs"][f"{weight:g}"] = {"temporal_weight": weight, "warp_error": float(np.mean(errors)),
                                         "teacher_distance": float(np.mean(distances)),
                                         "training_seconds": result.seconds,  # the step loop, not the pool
                                         "steps_per_second": args.steps / result.seconds,
                                         "final_loss": result.losses[-1]}
        print(json.dumps(report["runs"][f"{weight:g}"]), flush=True)
    base, steady = report["runs"]["0"], report["runs"][f"{args.weight:g}"]
    report["warp_error_change"] = steady["warp_error"] / base["warp_error"] - 1
    report["teacher_distance_change"] = steady["teacher_distance"] / base["teacher_distance"] - 1
    report["step_cost"] = base["steps_per_second"] / steady["steps_per_second"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "temporal_training.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}))


if __name__ == "__main__":
    main()
