"""Import time of `rtstyle` and one photo's wall time, for two checkouts, alternating, in one run.

    python benchmarks/before_after_startup.py OLD_CHECKOUT NEW_CHECKOUT --repeats 7

Each measurement is a fresh process (`PYTHONPATH` set to the checkout, run from outside both trees):
`python -X importtime -c "import rtstyle"` (the package's cumulative microseconds) and
`rtstyle stylize` of a 500x500 photo (wall seconds, the lean CPU path). Medians; the ratio is new/old.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "content" / "kodim01.png"


def import_us(checkout: Path) -> int:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import rtstyle"], capture_output=True,
                          text=True, cwd=tempfile.gettempdir(), env={**os.environ, "PYTHONPATH": str(checkout)})
    line = next(line for line in done.stderr.splitlines() if line.rstrip().endswith("| rtstyle"))
    return int(re.split(r"\|", line)[1])


def photo_s(checkout: Path, out: Path) -> float:
    command = [sys.executable, "-m", "rtstyle.cli.main", "stylize", str(PHOTO), "-o", str(out), "-y", "-q",
               "--device", "cpu"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=tempfile.gettempdir(),
                   env={**os.environ, "PYTHONPATH": str(checkout)})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "before_after_startup.json")
    args = parser.parse_args()
    samples = {name: {"import_us": [], "photo_s": []} for name in ("old", "new")}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for name in ("old", "new"):
                checkout = getattr(args, name)
                samples[name]["import_us"].append(import_us(checkout))
                samples[name]["photo_s"].append(photo_s(checkout, Path(folder) / f"{name}.png"))
    medians = {name: {k: statistics.median(v) for k, v in values.items()} for name, values in samples.items()}
    report = {"old": str(args.old), "new": str(args.new), "repeats": args.repeats, "samples": samples,
              "medians": medians, "ratio_new_over_old": {k: medians["new"][k] / medians["old"][k]
                                                         for k in medians["new"]}}
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps({"medians": medians, "ratio_new_over_old": report["ratio_new_over_old"]}, indent=2))


if __name__ == "__main__":
    main()
