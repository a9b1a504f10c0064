"""P6 by simulation: adaptive rollout budgets vs the paper's fixed 100 rollouts per position.

True rates: the published per-chunk accuracies of the 20 DeepSeek-R1-Distill-Qwen-14B traces
(shared/data/thought-anchors/.../chunks_labeled.json, field `accuracy`). For each trace and seed, every
position draws 100 Bernoulli(p) rollouts; the full-budget importance uses all 100, the adaptive policy
uses the first n_k of the same draws (nested, as a replay of a stored full run would). Importance is
the paper's resampling importance (accuracy), acc_{i+1} - acc_i; anchors are ranked by its magnitude.

Printed per policy: Spearman with the full-budget importance (median over traces x seeds), recall of
the full-budget top-5, and the fraction of the full budget used. Targets (issue 18): Spearman >= 0.9,
top-5 recall >= 95 %, <= 25 % of rollouts.

    .venv/bin/python benchmarks/bench_adaptive_budget.py [--seeds 20] [--data DIR]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np
from scipy.stats import spearmanr

from thoughtlens.anchors.importance.budget import BudgetPolicy, simulate

DATA = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "thought-anchors", "deepseek-r1-distill-qwen-14b"
)
FULL = 100
TOP = 5


def load_rates(data: str) -> list[np.ndarray]:
    files = sorted(glob.glob(os.path.join(data, "*", "problem_*", "chunks_labeled.json")))
    if not files:
        raise SystemExit(f"no chunks_labeled.json under {data}: pass --data DIR")
    return [np.array([c["accuracy"] for c in json.load(open(f))], float) for f in files]


def top(x: np.ndarray, k: int = TOP) -> set[int]:
    return set(np.argsort(-np.abs(x), kind="stable")[:k].tolist())


def evaluate(policy: BudgetPolicy, rates: list[np.ndarray], seeds: int) -> dict:
    rho, recall, used_frac, rho_true, recall_true = [], [], [], [], []
    for t, p in enumerate(rates):
        for seed in range(seeds):
            rng = np.random.default_rng([seed, t])
            draws = rng.random((len(p), FULL)) < p[:, None]
            full = draws.mean(1)
            imp_full = np.diff(full)
            used = simulate(policy, draws)
            acc = np.array([draws[k, :u].mean() for k, u in enumerate(used)])
            imp = np.diff(acc)
            r = spearmanr(imp, imp_full).statistic
            rho.append(1.0 if np.isnan(r) else r)  # NaN only when both are constant
            recall.append(len(top(imp) & top(imp_full)) / TOP)
            used_frac.append(used.sum() / (FULL * len(p)))
            truth = np.diff(p)  # the published rates' importance: what both estimates try to recover
            rho_true.append(spearmanr(imp, truth).statistic)
            recall_true.append(len(top(imp) & top(truth)) / TOP)
    return dict(
        spearman_median=float(np.median(rho)),
        spearman_mean=float(np.mean(rho)),
        spearman_p10=float(np.quantile(rho, 0.1)),
        recall=float(np.mean(recall)),
        used=float(np.sum(used_frac) / len(used_frac)),
        spearman_true=float(np.nanmedian(rho_true)),
        recall_true=float(np.mean(recall_true)),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--data", default=DATA)
    args = ap.parse_args()
    rates = load_rates(args.data)
    print(f"{len(rates)} traces, {sum(len(r) for r in rates)} positions, {args.seeds} seeds, full = {FULL}/position")
    policies = {
        "fixed 25": BudgetPolicy("fixed", max_rollouts=25),
        "sequential (default)": BudgetPolicy("sequential"),
        "hybrid (default)": BudgetPolicy("hybrid"),
        "sequential, top_k only": BudgetPolicy("sequential", ci_half_width=0.0, negligible=0.0),
        "sequential, loose (0.1/0.1)": BudgetPolicy("sequential", ci_half_width=0.1, negligible=0.1),
        "sequential, total 25 %": BudgetPolicy("sequential", total_fraction=0.25),
        "hybrid, total 25 %": BudgetPolicy("hybrid", total_fraction=0.25),
        "fixed 100 (the paper)": BudgetPolicy("fixed"),
    }
    print(
        f"{'policy':32s} {'spearman med':>12s} {'mean':>6s} {'p10':>6s} {'top5 recall':>11s} "
        f"{'rollouts':>9s} {'rho true':>8s} {'rec true':>8s} {'s':>5s}"
    )
    for name, pol in policies.items():
        t0 = time.perf_counter()
        m = evaluate(pol, rates, args.seeds)
        print(
            f"{name:32s} {m['spearman_median']:12.3f} {m['spearman_mean']:6.3f} {m['spearman_p10']:6.3f} "
            f"{m['recall']:11.1%} {m['used']:9.1%} {m['spearman_true']:8.3f} {m['recall_true']:8.1%} "
            f"{time.perf_counter() - t0:5.1f}"
        )
    print("rho true / rec true: the same figures against the published rates' importance (no sampling noise)")
    print("targets: spearman >= 0.9, top-5 recall >= 95 %, rollouts <= 25 % of the full budget")


if __name__ == "__main__":
    main()
