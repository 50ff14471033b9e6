"""Train a distill-mode adapter on ../shared/data/styles_set and evaluate it on held-out photos.

Training content: the frame sequences in ../shared/data/frames and the clip in ../shared/data/video
(videos are sampled), plus any `--extra-content` folders; none of ../shared/data/content is seen in
training. Evaluation on every photo of ../shared/data/content, long side `--eval-size`:

* PSNR of the adapter's output against the teacher's (the Ghiasi et al. network, style vector =
  mean embedding of the style set);
* style distance: || mean teacher-embedding of the outputs - mean embedding of the style images ||,
  for the adapter and for the bare base model; the drop is what the adapter learned.

Writes benchmarks/results/train_eval.{json,md} and a before/after contact sheet train_eval.png.
Run: python benchmarks/train_eval.py --steps 9000 --pool 2048 --extra-content styles  (the committed run)
     python benchmarks/train_eval.py --adapter FILE  (evaluate only)
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rtstyle.model.adapters import Adapter
from rtstyle.model.loader import fuse, load_base
from rtstyle.train.data import load_folder, to_tensor
from rtstyle.train.teachers import ArbitraryStyleTeacher
from rtstyle.train.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = (x.clamp(0, 1).mul(255).round() / 255 for x in (a, b))
    return float(10 * torch.log10(1 / F.mse_loss(a, b)))


def training_content(folder: Path, extra: list[str]) -> Path:
    """Symlinks to the frame sequences and clips (not the flow/occlusion visualisations), and to
    the images of the `extra` folders of shared/data; never to the held-out photos."""
    if "content" in extra:
        raise SystemExit("shared/data/content is the held-out evaluation set")
    paths = sorted(DATA.glob("frames/*/frame_*.png")) + sorted(DATA.glob("video/*.mp4"))
    paths += [p for name in extra for p in sorted((DATA / name).glob("*")) if p.is_file()]
    for path in paths:
        (folder / f"{path.parent.name}_{path.name}").symlink_to(path.resolve())
    return folder


def resize_long(image: np.ndarray, side: int) -> torch.Tensor:
    x = to_tensor(image)[None]
    scale = side / max(x.shape[-2:])
    h, w = (max(4, round(s * scale / 4) * 4) for s in x.shape[-2:])
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--pool", type=int, default=1024)
    parser.add_argument("--eval-size", type=int, default=384)
    parser.add_argument("--pixel-loss", choices=("mse", "l1"), default="mse")
    parser.add_argument("--lr", type=float, help="default: the trainer's for distill mode")
    parser.add_argument("--model", choices=("fast", "quality"), default="fast")
    parser.add_argument("--rank", type=int, default=TrainConfig.rank)
    parser.add_argument("--extra-content", nargs="*", default=[], metavar="FOLDER",
                        help="more training content from shared/data, e.g. styles (paintings)")
    parser.add_argument("--adapter", type=Path, help="evaluate this adapter instead of training one")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON, table and sheet go")
    args = parser.parse_args()
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    style_dir = DATA / "styles_set" / "hiroshige_tokaido"
    report: dict = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads"}
    with tempfile.TemporaryDirectory() as tmp:
        adapter_path = args.adapter
        if adapter_path is None:
            content = Path(tmp) / "content"
            content.mkdir()
            training_content(content, args.extra_content)
            adapter_path = results / f"hiroshige_{args.model}.safetensors"
            config = TrainConfig(style_dir=style_dir, content_dir=content, out=adapter_path, mode="distill",
                                 model=args.model, steps=args.steps, batch=args.batch, size=args.size, device="cpu",
                                 pool=args.pool, sample_every=0, checkpoint_every=500,
                                 pixel_loss=args.pixel_loss, lr=args.lr, rank=args.rank,
                                 alpha=args.rank)  # scaling alpha/r = 1, as with the CLI defaults
            started = time.perf_counter()
            result = train(config)
            settings = {k: v for k, v in vars(args).items() if k not in ("adapter", "results", "eval_size")}
            settings["lr"] = config.lr
            report["training"] = {"seconds": round(time.perf_counter() - started, 1), "steps": result.steps,
                                  "images_per_second": round(result.images_per_second, 2), **settings,
                                  "command": shlex.join(["python", "benchmarks/train_eval.py", *sys.argv[1:]])}
            print(json.dumps(report["training"]))
    adapter = Adapter.load(adapter_path)
    base = load_base(adapter.base_id)
    styled, plain = fuse(base, [(adapter, 1.0)]), fuse(base, [])
    teacher = ArbitraryStyleTeacher()
    styles = load_folder(style_dir, what="style images")
    style_embeddings = torch.cat([teacher.embed(to_tensor(s)[None]) for s in styles.images])
    vector = style_embeddings.mean(0)
    photos = load_folder(DATA / "content", what="content images")
    rows, tiles = [], []
    outs = {"adapter": [], "base": []}
    for name, image in zip(photos.names, photos.images):
        x = resize_long(image, args.eval_size)
        target = teacher.stylize(x, vector)
        with torch.no_grad():
            ours, bare = styled(x), plain(x)
        outs["adapter"].append(ours)
        outs["base"].append(bare)
        rows.append({"image": name, "psnr_adapter": psnr(ours, target), "psnr_base": psnr(bare, target)})
        if len(tiles) < 4:
            tiles.append(torch.cat([x, bare, ours, target], dim=-1))
    embedded = {k: torch.cat([teacher.embed(o) for o in v]).mean(0) for k, v in outs.items()}
    distance = {k: float((e - vector).norm()) for k, e in embedded.items()}
    report.update({
        "adapter": str(adapter_path.relative_to(ROOT)) if adapter_path.is_relative_to(ROOT) else str(adapter_path),
        "eval_size": args.eval_size, "held_out_images": len(rows),
        "mean_psnr_vs_teacher": float(np.mean([r["psnr_adapter"] for r in rows])),
        "mean_psnr_base_vs_teacher": float(np.mean([r["psnr_base"] for r in rows])),
        "style_distance_adapter": distance["adapter"], "style_distance_base": distance["base"],
        "style_distance_reduction": 1 - distance["adapter"] / distance["base"], "rows": rows})
    (results / "train_eval.json").write_text(json.dumps(report, indent=2))
    _contact_sheet(tiles, results / "train_eval.png")
    lines = [f"Distill-mode adapter for the {adapter.base_id} model, trained on styles_set/hiroshige_tokaido; "
             f"evaluated on the {len(rows)} held-out photos of shared/data/content at {args.eval_size} px "
             "(long side).", "",
             f"| | adapter | bare {adapter.base_id} model |", "|---|---:|---:|",
             f"| mean PSNR vs teacher (dB) | {report['mean_psnr_vs_teacher']:.2f} | "
             f"{report['mean_psnr_base_vs_teacher']:.2f} |",
             f"| style distance to the style set (teacher embedding) | {distance['adapter']:.3f} | "
             f"{distance['base']:.3f} |", "",
             f"Style distance reduction: {100 * report['style_distance_reduction']:.0f}%."]
    if "training" in report:
        t = report["training"]
        lines += ["", f"Training: `{t['command']}` on {report['machine']}: {t['steps']} steps of {t['batch']} x "
                      f"{t['size']} px in {t['seconds'] / 60:.1f} min ({t['images_per_second']:.1f} images/s)."]
    (results / "train_eval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _contact_sheet(tiles: list[torch.Tensor], path: Path) -> None:
    """Rows: photo | bare base | adapter | teacher, each scaled to 192 px high."""
    rows = []
    for t in tiles:
        width = round(t.shape[-1] * 192 / t.shape[-2])
        rows.append(F.interpolate(t, size=(192, width), mode="bilinear", antialias=True, align_corners=False)[0])
    width = max(r.shape[-1] for r in rows)
    rows = [F.pad(r, (0, width - r.shape[-1])) for r in rows]
    grid = torch.cat(rows, dim=-2).permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
    Image.fromarray(grid).save(path)


if __name__ == "__main__":
    main()
