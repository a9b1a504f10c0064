"""Replay an adaptive budget policy on a stored full-budget run: how close would it have come, for how much?

A full-budget run (every prefix position sampled n_rollouts times, `thoughtlens anchors run`) is the
ground truth. For each seed, each position's stored resampled rollouts are shuffled (seeded), the
policy draws them in that order round by round (`budget.simulate`), and the importance it would have
reported (the paper's resampling importance in accuracy, acc_{i+1} - acc_i, acc = correct / answered)
is compared with the full-budget one: Spearman, recall of the top-k sentences by |importance|, and the
fraction of the rollouts used. Issue 18's targets: Spearman >= 0.9, top-5 recall >= 95 %, <= 25 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from thoughtlens.anchors.importance.budget import BudgetPolicy, simulate
from thoughtlens.errors import StoreError
from thoughtlens.store.run_store import RunStore


@dataclass(frozen=True)
class ReplayResult:
    """One (problem, seed): agreement with the full budget and the share of rollouts used."""

    problem_id: str
    seed: int
    spearman: float
    top_k_recall: float
    fraction_used: float
    n_sentences: int


def _accuracy(correct: np.ndarray, answered: np.ndarray) -> np.ndarray:
    """Paper accuracy per position: correct / answered, 0.0 where nothing was answered. [positions]"""
    n = answered.sum(1)
    return np.where(n > 0, (correct & answered).sum(1) / np.maximum(n, 1), 0.0)


def top_set(importance: np.ndarray, k: int) -> set[int]:
    """Indices of the k sentences with the largest |importance| (ties: the earlier sentence)."""
    return set(np.argsort(-np.abs(importance), kind="stable")[:k].tolist())


def rank_agreement(est: np.ndarray, full: np.ndarray) -> float:
    """Spearman of est vs full, [S] each. Undefined when one is constant: 1.0 if both are (nothing to rank,
    nothing missed), 0.0 if only one is (an all-zero estimate says nothing about a ranking that exists)."""
    const_est, const_full = np.ptp(est) == 0, np.ptp(full) == 0
    if const_est or const_full or len(full) < 2:
        return 1.0 if const_est and const_full else 0.0
    return float(spearmanr(est, full).statistic)


def replay_arrays(
    policy: BudgetPolicy, correct: np.ndarray, answered: np.ndarray, seed: int, top_k: int = 5, problem_id: str = ""
) -> ReplayResult:
    """Replay on arrays: correct, answered [positions, n] bool (position k's n stored rollouts)."""
    if correct.shape != answered.shape or correct.ndim != 2 or correct.shape[0] < 2:
        raise ValueError(f"need [positions >= 2, n] arrays of the same shape, got {correct.shape} and {answered.shape}")
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random(correct.shape), axis=1)  # an independent shuffle of each position
    c, a = np.take_along_axis(correct, order, 1), np.take_along_axis(answered, order, 1)
    used = simulate(policy, c, a)
    full = np.diff(_accuracy(c, a))
    mask = np.arange(c.shape[1])[None, :] < used[:, None]
    est = np.diff(_accuracy(c & mask, a & mask))
    k = min(top_k, len(full))
    return ReplayResult(
        problem_id,
        seed,
        rank_agreement(est, full),
        len(top_set(est, k) & top_set(full, k)) / k,
        float(used.sum() / c.size),
        len(full),
    )


def stored_outcomes(store: RunStore, run_id: str, problem_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(correct, answered), each [positions, n], from a run's resampled rollouts (errors dropped).
    Positions with more rollouts than the smallest are cut to it (by sample index) so that all share one cap."""
    df = store.rollouts(run_id, problem_id)
    df = df[(df["condition"] == "resampled") & (df["finish_reason"] != "error")]
    if df.empty:
        raise StoreError(f"run '{run_id}' has no resampled rollouts for '{problem_id}': replay needs a full-budget run")
    groups = [g.sort_values("sample_index") for _, g in df.groupby("sentence_index")]
    n = min(len(g) for g in groups)
    answered = np.array([g["answer"].notna().to_numpy()[:n] for g in groups])
    correct = np.array([g["is_correct"].fillna(False).astype(bool).to_numpy()[:n] for g in groups]) & answered
    return correct, answered


def replay_run(
    store: RunStore,
    run_id: str,
    policy: BudgetPolicy,
    seeds: int = 20,
    top_k: int = 5,
    problems: list[str] | None = None,
) -> list[ReplayResult]:
    """Replay `policy` on every problem of a stored run (or on `problems`, e.g. the ones a run has finished),
    `seeds` shuffles each."""
    stored = sorted(store.rollouts(run_id)["problem_id"].unique())
    if not stored:
        raise StoreError(f"run '{run_id}' has no rollouts: run `thoughtlens anchors run` with a full budget first")
    missing = sorted(set(problems or ()) - set(stored))
    if missing:
        raise StoreError(
            f"run '{run_id}' has no rollouts for {', '.join(missing)}: pass problem ids of the run "
            f"({', '.join(stored)})"
        )
    problems = sorted(problems) if problems else stored
    out = []
    for pid in problems:
        correct, answered = stored_outcomes(store, run_id, pid)
        out += [replay_arrays(policy, correct, answered, s, top_k, pid) for s in range(seeds)]
    return out
