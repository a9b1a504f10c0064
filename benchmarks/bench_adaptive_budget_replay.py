"""P6 by replay: adaptive budgets replayed on a stored full-budget thoughtlens run.

Make the ground truth first (expensive: bundled model, 3 GSM8K problems, 32 rollouts/position; about 30 min
on 2 loaded cores): one `thoughtlens anchors run` per problem of benchmarks/replay_problems.py

    OMP_NUM_THREADS=1 bash benchmarks/replay_ground_truth.sh            # -> runs/replay_full/full.sqlite

then replay (seeded shuffles of each position's stored rollouts; see thoughtlens.anchors.importance.budget_replay):

    .venv/bin/python benchmarks/bench_adaptive_budget_replay.py runs/replay_full/full.sqlite [--seeds 50]

(every run of the store is replayed and pooled; --run-id / --problems pick some).

Policies replayed (all printed, none picked after seeing the figures):
  * fixed n / 4 rollouts at every position: the non-adaptive baseline at exactly the 25 % budget;
  * the library defaults (initial 10, step 10, CI half-width 0.05, negligible 0.05), made for the paper's
    100-rollout budget;
  * the defaults scaled to the stored budget n by one rule fixed before the replay: initial = step = n / 8
    (4 for n = 32: the first round alone is 12.5 %, and the <= 25 % target leaves one more round on
    average), with the CI half-width and the negligible band both set to the narrowest Newcombe
    half-width reachable with m rollouts per position (0/m vs 0/m), for m = n, n / 2 and n / 4 (0.107,
    0.194, 0.324 for n = 32): a sentence may stop once it is as settled as m rollouts can make it. The
    default 0.05 cannot be reached at all with 32 rollouts, so with it only the top-5 elimination stops.
  * (added 2026-11-27, settings fixed before the replay) the same scaled sequential and hybrid policies at
    the strictest CI (m = n) with the total cap `total_fraction=0.25`: exactly the 25 % budget, each round
    spent on the widest CIs first.
Each row: median and mean Spearman with the full-budget importance, mean top-5 recall, mean share of the
rollouts used, and the share of (problem, seed) pairs that meet all three targets at once.
"""

from __future__ import annotations

import argparse

import numpy as np

from thoughtlens.anchors.importance.budget import BudgetPolicy, PositionStats, ci_half_widths
from thoughtlens.anchors.importance.budget_replay import replay_run, stored_outcomes
from thoughtlens.store.run_store import RunStore

TARGET_RHO, TARGET_RECALL, TARGET_FRACTION = 0.9, 0.95, 0.25


def policies(n: int) -> dict[str, BudgetPolicy]:
    """The replayed settings for a stored budget of n rollouts per position (module docstring)."""
    s = max(1, n // 8)
    out = {
        "fixed (full budget)": BudgetPolicy("fixed"),
        f"fixed {n // 4} (25 %, baseline)": BudgetPolicy("fixed", max_rollouts=n // 4),
        "sequential (defaults)": BudgetPolicy("sequential"),
        "hybrid (defaults)": BudgetPolicy("hybrid"),
    }
    for kind in ("sequential", "hybrid"):
        for m in (n, n // 2, n // 4):
            ci = float(ci_half_widths([PositionStats(m, m, 0)] * 2)[0]) + 1e-6  # narrowest CI with m rollouts
            out[f"{kind} {s}/{s}, ci {ci:.3f}"] = BudgetPolicy(kind, initial=s, step=s, ci_half_width=ci, negligible=ci)
    ci = float(ci_half_widths([PositionStats(n, n, 0)] * 2)[0]) + 1e-6
    for kind in ("sequential", "hybrid"):
        for step in (s, 1):  # step 1: added after the step-s rows equalled fixed n/4, to see whether the cap can choose
            out[f"{kind} {s}/{step}, ci {ci:.3f}, total 25%"] = BudgetPolicy(
                kind, initial=s, step=step, ci_half_width=ci, negligible=ci, total_fraction=0.25
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--run-id", nargs="+", default=None, help="default: every run of the store (pooled)")
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--problems", nargs="+", default=None, help="problem ids to replay (default: all of each run's)")
    args = ap.parse_args()
    store = RunStore(args.store)
    run_ids = args.run_id or [r["run_id"] for r in store.runs()]
    if not run_ids:
        raise SystemExit(f"{args.store} holds no runs: make the full-budget run first (module docstring)")
    pairs = []  # (run_id, problem_id): one problem of one full-budget run
    for run_id in run_ids:
        stored = sorted(store.rollouts(run_id)["problem_id"].unique())
        pairs += [(run_id, pid) for pid in stored if args.problems is None or pid in args.problems]
    n_min = None
    print(f"{len(pairs)} problems in {len(run_ids)} run(s)")
    for run_id, pid in pairs:
        correct, answered = stored_outcomes(store, run_id, pid)
        acc = np.where(answered.sum(1) > 0, correct.sum(1) / np.maximum(answered.sum(1), 1), 0.0)
        imp = np.diff(acc)
        n_min = correct.shape[1] if n_min is None else min(n_min, correct.shape[1])
        print(
            f"  {run_id}/{pid}: {len(imp)} sentences, {correct.shape[1]} rollouts/position, answered "
            f"{answered.mean():.0%}, accuracy by position {' '.join(f'{a:.2f}' for a in acc)}"
        )
        print(f"    answered by position {' '.join(str(int(a)) for a in answered.sum(1))} of {correct.shape[1]}")
        print(
            f"    importance {' '.join(f'{x:+.2f}' for x in imp)}"
            + ("  (<= 5 sentences: top-5 recall is 100 % by construction)" if len(imp) <= 5 else "")
        )
    print(f"\n{'policy':28s} {'rho med':>7s} {'rho mean':>8s} {'top5 rec':>8s} {'rollouts':>8s} {'all 3 met':>9s}")
    for name, pol in policies(n_min).items():
        res = []
        for run_id in run_ids:
            pids = [pid for r, pid in pairs if r == run_id]
            if pids:
                res += replay_run(store, run_id, pol, seeds=args.seeds, problems=pids)
        rho = np.array([r.spearman for r in res])
        rec = np.array([r.top_k_recall for r in res])
        frac = np.array([r.fraction_used for r in res])
        met = (rho >= TARGET_RHO) & (rec >= TARGET_RECALL) & (frac <= TARGET_FRACTION)
        print(
            f"{name:28s} {np.median(rho):7.3f} {rho.mean():8.3f} {rec.mean():8.1%} {frac.mean():8.1%} {met.mean():9.0%}"
        )
        for pid in sorted({r.problem_id for r in res}):
            sel = [r for r in res if r.problem_id == pid]
            print(
                f"    {pid:24s} {np.median([r.spearman for r in sel]):7.3f} {np.mean([r.spearman for r in sel]):8.3f} "
                f"{np.mean([r.top_k_recall for r in sel]):8.1%} {np.mean([r.fraction_used for r in sel]):8.1%}"
            )
    print(
        f"targets: spearman >= {TARGET_RHO}, top-5 recall >= {TARGET_RECALL:.0%}, rollouts <= {TARGET_FRACTION:.0%} "
        f"of the full budget ({args.seeds} seeds per problem; 'all 3 met': share of (problem, seed) pairs)"
    )


if __name__ == "__main__":
    main()
