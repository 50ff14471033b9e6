"""The training face term (`train --face-weight`): two distill adapters of the fast model, one without the
term and one with it, on the same data, seed and steps; the faces' SSIM to the photo with each, and the
whole picture's (which says whether the style itself weakened).

Style: the first 12 pictures of ../shared/data/styles_set/hiroshige_tokaido. Content: kodim01, 03, 04, 05,
13, 14, 15 (kodim04, 14, 15 have faces). astronaut is held out: it is not trained on. CPU, 192 px crops,
batch 4, a pool of 96 teacher targets.

Run: python benchmarks/face_term.py [--steps 300] [--weight 3]
Writes benchmarks/results/face_term.json and face_term.jpg (astronaut and kodim15, without | with).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faces import crop, grey, ssim  # noqa: E402 - benchmarks/faces.py's measures

from rtstyle.api import load_stylizer  # noqa: E402
from rtstyle.config import EngineConfig  # noqa: E402
from rtstyle.io.images import read_image  # noqa: E402
from rtstyle.model.styles import StyleChoice  # noqa: E402
from rtstyle.pipeline.faces import FaceStage  # noqa: E402
from rtstyle.train.trainer import TrainConfig, train  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONTENT = ["kodim01", "kodim03", "kodim04", "kodim05", "kodim13", "kodim14", "kodim15"]
EVAL = {"astronaut": "held out", "kodim04": "trained on", "kodim15": "trained on"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--weight", type=float, default=3.0)
    args = parser.parse_args()
    report = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "steps": args.steps, "runs": {}}
    pictures = {}
    with tempfile.TemporaryDirectory() as folder:
        styles, content = Path(folder) / "styles", Path(folder) / "content"
        styles.mkdir()
        content.mkdir()
        for path in sorted((SHARED / "styles_set" / "hiroshige_tokaido").glob("*.jpg"))[:12]:
            shutil.copy(path, styles)
        for name in CONTENT:
            shutil.copy(SHARED / "content" / f"{name}.png", content)
        for weight in (0.0, args.weight):
            out = Path(folder) / f"face{weight:g}.safetensors"
            started = time.perf_counter()
            train(TrainConfig(style_dir=styles, content_dir=content, out=out, mode="distill", model="fast",
                              steps=args.steps, batch=4, size=192, pool=96, sample_every=0, checkpoint_every=10**6,
                              device="cpu", face_weight=weight))
            stylizer = load_stylizer("fast", StyleChoice({str(out): 1.0}), EngineConfig(device="cpu"))
            run = {"seconds": round(time.perf_counter() - started, 1)}
            for name, role in EVAL.items():
                photo = read_image(SHARED / "content" / f"{name}.png")[0]
                face = FaceStage(1.0).detect(photo)[0]
                output = stylizer([photo])[0]
                pictures[(name, weight)] = output
                run[name] = {"role": role,
                             "face_ssim": round(ssim(grey(output[crop(face, photo.shape)]),
                                                    grey(photo[crop(face, photo.shape)])), 4),
                             "picture_ssim": round(ssim(grey(output), grey(photo)), 4)}
            report["runs"][f"face_weight {weight:g}"] = run
            print(weight, run, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "face_term.json").write_text(json.dumps(report, indent=1) + "\n")
    import cv2

    rows = [np.concatenate([cv2.resize(pictures[(name, w)], (300, 300), interpolation=cv2.INTER_AREA)
                            for w in (0.0, args.weight)], axis=1) for name in ("astronaut", "kodim15")]
    cv2.imwrite(str(RESULTS / "face_term.jpg"), cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 88])


if __name__ == "__main__":
    main()
