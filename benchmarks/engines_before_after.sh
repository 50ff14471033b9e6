#!/bin/bash
# The torch paths before and after a change: benchmarks/engines.py of two commits, each from its own
# git worktree (so each runs its own code), alternating for two rounds on the CPU; then a table of
# the ratios (benchmarks/results/engines_before_after.{json,md}).
#
# Run: bash benchmarks/engines_before_after.sh BEFORE_REV [AFTER_REV]   (about 16 minutes on 2 cores)
# Used for issue 12 with BEFORE_REV=ca7df1c^ (the commit before the lean runtime).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BEFORE=${1:?before revision}
AFTER=${2:-HEAD}
PYTHON=${PYTHON:-python}
WORK=$(mktemp -d)
ARGS="--device cpu --backends torch jit onnx --batches 4 --resolutions 512x512 1280x720 --repeats 5"
git -C "$ROOT" worktree add -q "$WORK/before" "$BEFORE"
git -C "$ROOT" worktree add -q "$WORK/after" "$AFTER"
trap 'git -C "$ROOT" worktree remove --force "$WORK/before"; git -C "$ROOT" worktree remove --force "$WORK/after"' EXIT
for round in 1 2; do
  for tree in before after; do
    (cd "$WORK/$tree" && PYTHONPATH="$WORK/$tree" $PYTHON benchmarks/engines.py $ARGS > /dev/null)
    cp "$WORK/$tree/benchmarks/results/engines_cpu.json" "$WORK/${tree}_$round.json"
  done
done
$PYTHON "$ROOT/benchmarks/engines_compare.py" --label-before "$BEFORE" --label-after "$AFTER" \
  --before "$WORK"/before_1.json "$WORK"/before_2.json --after "$WORK"/after_1.json "$WORK"/after_2.json
