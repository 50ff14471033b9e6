"""Huge images: peak memory and time at 16, 64 and 100 megapixels, tiled against untiled, and the joins.

Each size is a PNG made from a real photo (../shared/data/content/kodim01.png, mirrored tile by tile
so there are no hard edges), converted by `rtstyle stylize` in its own process on the CPU (the lean
path tiles anything above 2048 x 2048); /usr/bin/time gives wall seconds and peak resident memory.
At 2048 x 2048, where the whole image also fits, the tiled result is compared with the untiled one
(PSNR), and the joins are measured: the mean absolute step between neighbouring pixels across tile
borders against the same everywhere else. A crop at a tile corner is saved to look at.

Run: python benchmarks/huge_image.py [--sizes 4000 8000 10000]
Writes benchmarks/results/huge_image.{json,md} and huge_image_corner.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def make_image(side: int) -> np.ndarray:
    photo = np.asarray(Image.open(DATA / "content" / "kodim01.png").convert("RGB"))
    mirrored = np.concatenate([photo, photo[:, ::-1]], axis=1)
    mirrored = np.concatenate([mirrored, mirrored[::-1]], axis=0)
    reps = -(-side // mirrored.shape[0])
    return np.ascontiguousarray(np.tile(mirrored, (reps, reps, 1))[:side, :side])


def run(command: list[str]) -> tuple[float, float]:
    done = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-800:])
    wall, peak_kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(peak_kb) / 1024


def tiled_against_untiled(model: str) -> dict:
    from rtstyle.api import load_stylizer
    from rtstyle.config import EngineConfig
    from rtstyle.model.ort_session import OrtSession
    from rtstyle.stylizers.tiles import TILE, TiledStylizer

    image = make_image(2048)
    stylizer = load_stylizer(model, None, EngineConfig(device="cpu"))
    whole = stylizer([image])[0].astype(np.float64)
    tiled_uint8 = TiledStylizer(stylizer.base_id, stylizer._weights, OrtSession)(image)
    tiled = tiled_uint8.astype(np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((tiled - whole) ** 2))
    borders = np.arange(TILE, 2048, TILE) - 1
    across, elsewhere = steps(tiled, borders)
    reference = steps(whole, borders)  # the same columns and rows of the untiled result: the content's own ratio
    if model == "quality":
        Image.fromarray(tiled_uint8[TILE - 128:TILE + 128, TILE - 128:TILE + 128]).resize(
            (512, 512), Image.NEAREST).save(RESULTS / "huge_image_corner.png")
    return {"model": model, "size": "2048x2048", "psnr_tiled_vs_untiled_db": round(float(psnr), 2),
            "step_across_tile_borders": round(across, 3), "step_elsewhere": round(elsewhere, 3),
            "seam_ratio": round(across / elsewhere, 3), "seam_ratio_untiled": round(reference[0] / reference[1], 3)}


def steps(image: np.ndarray, borders: np.ndarray) -> tuple[float, float]:
    """Mean absolute step between neighbouring pixels across `borders` (columns and rows), and elsewhere."""
    step_x = np.abs(np.diff(image, axis=1)).mean(axis=(0, 2))  # step between column x and x + 1
    step_y = np.abs(np.diff(image, axis=0)).mean(axis=(1, 2))
    across = float(np.concatenate([step_x[borders], step_y[borders]]).mean())
    elsewhere = float(np.concatenate([np.delete(step_x, borders), np.delete(step_y, borders)]).mean())
    return across, elsewhere


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[4000, 8000, 10000])
    parser.add_argument("--models", nargs="+", default=["fast", "quality"])
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rtstyle = str(Path(shutil.which("rtstyle") or "rtstyle"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sizes:
            src = Path(tmp) / f"in{side}.png"
            Image.fromarray(make_image(side)).save(src, compress_level=1)
            for model in args.models:
                wall, peak = run([rtstyle, "stylize", str(src), "-o", str(Path(tmp) / "out.png"), "--model", model,
                                  "-y", "-q"])
                row = {"model": model, "side": side, "megapixels": round(side * side / 1e6, 1), "wall_s": wall,
                       "peak_mb": round(peak)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            src.unlink()
    quality = [tiled_against_untiled(model) for model in args.models]
    for row in quality:
        print(json.dumps(row), flush=True)
    if not rows and (RESULTS / "huge_image.json").exists():  # only the tiling part was asked for: keep the sizes
        rows = json.loads((RESULTS / "huge_image.json").read_text())["rows"]
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows, "tiling": quality}
    (RESULTS / "huge_image.json").write_text(json.dumps(report, indent=2))
    lines = [f"Huge images on {report['machine']} (`python benchmarks/huge_image.py`): `rtstyle stylize` in its own "
             "process, PNG in and out, lean CPU path.", "",
             "| model | size | megapixels | wall s | peak memory MB |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['side']}x{r['side']} | {r['megapixels']} | {r['wall_s']:.1f} | {r['peak_mb']} |"
              for r in rows]
    lines += ["", "Tiled (1024 px thumbnail statistics, 512 px tiles) against untiled at 2048x2048:", "",
              "| model | PSNR dB | mean step across tile borders | elsewhere | ratio | same ratio, untiled |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {q['model']} | {q['psnr_tiled_vs_untiled_db']} | {q['step_across_tile_borders']} | "
              f"{q['step_elsewhere']} | {q['seam_ratio']} | {q['seam_ratio_untiled']} |" for q in quality]
    (RESULTS / "huge_image.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
