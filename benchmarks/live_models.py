"""Which model a live stream on this CPU should default to: each built-in model's fitted scale, and how it looks.

For the quality and the fast model, `fitted_scale` (what `--scale auto` runs at the start of a stream)
for a 640x480 camera at 30 fps on this machine, repeated; and one photo of ../shared/data/content at
640x480 through each model at full size and at its fitted scale, side by side, to look at. The webcam
and serve commands default to the fast model on a CPU because of what this shows.

Run: python benchmarks/live_models.py [--repeats 3]
Writes benchmarks/results/live_models.{json,md,jpg}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import cv2
import numpy as np

from rtstyle.api import load_stylizer
from rtstyle.config import EngineConfig
from rtstyle.model.styles import StyleChoice
from rtstyle.pipeline.scale import enlarge, fitted_scale, shrink

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PHOTO = ROOT.parent / "shared" / "data" / "content" / "kodim01.png"
WIDTH, HEIGHT, FPS = 640, 480, 30.0


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    panel = np.ascontiguousarray(image[..., ::-1])  # RGB -> BGR for OpenCV
    for colour, thickness in (((0, 0, 0), 5), ((255, 255, 255), 2)):
        cv2.putText(panel, text, (12, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.9, colour, thickness, cv2.LINE_AA)
    return panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    photo = cv2.resize(cv2.imread(str(PHOTO))[..., ::-1], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    rows, panels = [], []
    for model in ("quality", "fast"):
        stylizer = load_stylizer(model, StyleChoice(), EngineConfig(device="cpu"))
        fits = [fitted_scale(stylizer, WIDTH, HEIGHT, FPS) for _ in range(args.repeats)]
        scale = statistics.median(scale for scale, _ in fits)
        rows.append({"model": model, "full_size_ms": [round(ms, 1) for _, ms in fits],
                     "fitted_scales": [scale for scale, _ in fits], "median_scale": scale})
        print(json.dumps(rows[-1]), flush=True)
        panels += [labelled(stylizer([photo])[0], f"{model}, full size"),
                   labelled(enlarge(stylizer(shrink([photo], scale)), [photo])[0], f"{model}, auto: {scale:g}")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    top, bottom = np.concatenate(panels[:2], axis=1), np.concatenate(panels[2:], axis=1)
    cv2.imwrite(str(RESULTS / "live_models.jpg"), np.concatenate([top, bottom], axis=0), [cv2.IMWRITE_JPEG_QUALITY, 90])
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    report = {"machine": machine, "camera": f"{WIDTH}x{HEIGHT} at {FPS:g} fps", "style": "starry-swirl", "rows": rows}
    (RESULTS / "live_models.json").write_text(json.dumps(report, indent=2))
    lines = [f"`--scale auto` for a {WIDTH}x{HEIGHT} camera at {FPS:g} fps on {machine}, default style, "
             f"{args.repeats} fits per model (`python benchmarks/live_models.py`); "
             "[live_models.jpg](live_models.jpg) shows kodim01 through each model at full size and at its scale.",
             "", "| model | a full-size frame, ms | fitted scale |", "|---|---|---|"]
    lines += [f"| {r['model']} | {', '.join(map(str, r['full_size_ms']))} | "
              f"{', '.join(f'{s:g}' for s in r['fitted_scales'])} |" for r in rows]
    (RESULTS / "live_models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
