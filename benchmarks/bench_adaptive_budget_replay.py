"""P6 by replay: adaptive budgets replayed on a stored full-budget thoughtlens run.

Make the ground truth first (expensive: bundled model, >= 3 GSM8K problems, >= 32 rollouts/position):

    .venv/bin/thoughtlens anchors run --limit 3 -n 32 --store full.sqlite   # see `anchors run --help`

then replay (seeded shuffles of each position's stored rollouts; see thoughtlens.anchors.replay):

    .venv/bin/python benchmarks/bench_adaptive_budget_replay.py full.sqlite [--run-id ID] [--seeds 20]
"""

from __future__ import annotations

import argparse

import numpy as np

from thoughtlens.anchors.budget import BudgetPolicy
from thoughtlens.anchors.replay import replay_run
from thoughtlens.store.run_store import RunStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--run-id", default=None, help="default: the store's only run")
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    store = RunStore(args.store)
    runs = [r["run_id"] for r in store.runs()]
    run_id = args.run_id or (runs[0] if len(runs) == 1 else None)
    if run_id is None:
        raise SystemExit(f"the store holds {len(runs)} runs: pass --run-id (one of {', '.join(runs)})")
    policies = {"fixed (full budget)": BudgetPolicy("fixed"), "sequential (default)": BudgetPolicy("sequential"),
                "hybrid (default)": BudgetPolicy("hybrid"),
                "sequential, loose (0.1/0.1)": BudgetPolicy("sequential", ci_half_width=0.1, negligible=0.1)}
    print(f"{'policy':30s} {'spearman med':>12s} {'top5 recall':>11s} {'rollouts':>9s}")
    for name, pol in policies.items():
        res = replay_run(store, run_id, pol, seeds=args.seeds)
        print(f"{name:30s} {np.median([r.spearman for r in res]):12.3f} {np.mean([r.top_k_recall for r in res]):11.1%} "
              f"{np.mean([r.fraction_used for r in res]):9.1%}")
    print("targets: spearman >= 0.9, top-5 recall >= 95 %, rollouts <= 25 % of the full budget")


if __name__ == "__main__":
    main()
