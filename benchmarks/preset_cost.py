"""What a slower x264 preset costs a whole conversion on the CPU path, where the stylizer, not the
encoder, is the slower stage: file to file (640x360 film excerpt, audio copied), veryfast against
medium, alternating, median of the rounds.

Run: python benchmarks/preset_cost.py [--rounds 2]   Writes results/preset_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLIP = ROOT / ".." / "shared" / "data" / "video" / "big_buck_bunny_cut.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from rtstyle.api import load_stylizer
    from rtstyle.config import ConvertConfig
    from rtstyle.jobs.convert import convert_file
    from rtstyle.model.styles import StyleChoice

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("fast", "quality"):
            stylizer = load_stylizer(model, StyleChoice({"mosaic": 1.0}))
            fps: dict[str, list[float]] = {"veryfast": [], "medium": []}
            size = {}
            for _ in range(args.rounds):
                for preset in fps:
                    out = Path(tmp) / f"{preset}.mp4"
                    result = convert_file(CLIP, out, stylizer, ConvertConfig(preset=preset, encoders=1))
                    fps[preset].append(result.fps)
                    size[preset] = out.stat().st_size
                    out.unlink()
            row = {"model": model, **{f"{p}_fps": round(statistics.median(v), 2) for p, v in fps.items()},
                   **{f"{p}_mb": round(b / 1e6, 2) for p, b in size.items()}}
            row["medium_fps_ratio"] = round(row["medium_fps"] / row["veryfast_fps"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = ROOT / "benchmarks" / "results" / "preset_cost.json"
    out.write_text(json.dumps({"command": "python benchmarks/preset_cost.py " + " ".join(sys.argv[1:]),
                               "machine": "2-core x86_64 CPU, no GPU", "clip": CLIP.name, "style": "mosaic",
                               "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
