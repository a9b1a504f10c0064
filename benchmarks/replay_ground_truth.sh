#!/bin/bash
# The full-budget ground truth of issue 18 P6 (a), replayed by bench_adaptive_budget_replay.py.
# One `thoughtlens anchors run` per problem of benchmarks/replay_problems.py, all in one store; the base trace of
# each is the problem's GSM8K reference solution (read in place from ../shared/data; see that file's docstring).
# Resumable: rerun it.
#   OMP_NUM_THREADS=1 bash benchmarks/replay_ground_truth.sh [STORE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/replay_full}
mkdir -p "$out"
py=.venv/bin/python
for id in $($py benchmarks/replay_problems.py); do
  $py benchmarks/replay_problems.py "$id" trace > "$out/$id.txt"
  .venv/bin/thoughtlens anchors run --trace "$out/$id.txt" --problem "$($py benchmarks/replay_problems.py "$id" question)" \
    --answer "$($py benchmarks/replay_problems.py "$id" gt_answer)" \
    -n 32 --no-forced --no-counterfactual-matrix --max-new-tokens 120 --batch-size 32 --store "$out/full.sqlite"
done
