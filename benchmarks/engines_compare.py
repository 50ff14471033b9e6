"""Compare engines.py results of two code versions: the median ms per frame of each row over its runs.

Run by benchmarks/engines_before_after.sh; writes benchmarks/results/engines_before_after.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def rows_by_key(paths: list[str]) -> dict[tuple, list[float]]:
    found: dict[tuple, list[float]] = {}
    for path in paths:
        for row in json.loads(Path(path).read_text())["rows"]:
            key = (row["model"], row["engine"], row["precision"], row["batch"], row["resolution"])
            found.setdefault(key, []).append(row["ms_per_frame"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label-before", required=True)
    parser.add_argument("--label-after", required=True)
    parser.add_argument("--before", nargs="+", required=True, help="engines.py JSONs of the earlier code")
    parser.add_argument("--after", nargs="+", required=True, help="engines.py JSONs of the later code")
    args = parser.parse_args()
    before, after = rows_by_key(args.before), rows_by_key(args.after)
    rows = []
    for key in sorted(set(before) & set(after)):
        was, now = statistics.median(before[key]), statistics.median(after[key])
        rows.append({"model": key[0], "engine": key[1], "precision": key[2], "batch": key[3], "resolution": key[4],
                     "before_ms": round(was, 1), "after_ms": round(now, 1), "after_vs_before": round(now / was, 2),
                     "runs": [before[key], after[key]]})
    report = {"before": args.label_before, "after": args.label_after, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engines_before_after.json").write_text(json.dumps(report, indent=2))
    lines = [f"benchmarks/engines.py on the CPU, before ({args.label_before}) and after ({args.label_after}), each "
             "from its own worktree, alternating, median of the runs (`bash benchmarks/engines_before_after.sh`). "
             "ms per frame; a ratio below 1 is faster now.", "",
             "| model | engine | batch | size | before ms | after ms | after / before |",
             "|---|---|---:|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['engine']} | {r['batch']} | {r['resolution']} | {r['before_ms']} | "
              f"{r['after_ms']} | {r['after_vs_before']:.2f} |" for r in rows]
    (RESULTS / "engines_before_after.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
