"""Replaying a budget policy on a stored full-budget run (thoughtlens.anchors.importance.budget_replay), on a
synthetic store."""

from __future__ import annotations

import numpy as np
import pytest

from thoughtlens.anchors.importance.budget import BudgetPolicy
from thoughtlens.anchors.importance.budget_replay import replay_run, stored_outcomes
from thoughtlens.errors import StoreError
from thoughtlens.store.run_store import RunStore

RATES = [1.0, 1.0, 0.9, 0.1, 0.1, 0.0, 0.5, 0.5]  # one sharp anchor (2 -> 3), the rest nearly flat
N = 40


def _store(tmp_path):
    rng = np.random.default_rng(0)
    store = RunStore(tmp_path / "s.sqlite")
    store.create_run("r", {"n_rollouts": N})
    store.add_problem("r", "p", "q", "6")
    draws = rng.random((len(RATES), N)) < np.array(RATES)[:, None]
    for k in range(len(RATES)):
        for j in range(N):
            ok = bool(draws[k, j])
            store.add_rollout(
                "r",
                "p",
                k,
                "resampled",
                j,
                text="t",
                answer="6" if ok else "5",
                is_correct=ok,
                n_tokens=3,
                finish_reason="stop",
                error=None,
            )
    return store, draws


def test_stored_outcomes_reads_back_what_was_stored(tmp_path):
    store, draws = _store(tmp_path)
    correct, answered = stored_outcomes(store, "r", "p")
    assert answered.all() and (correct == draws).all()


def test_fixed_full_budget_replays_exactly_and_adaptive_uses_less(tmp_path):
    store, draws = _store(tmp_path)
    (fixed,) = replay_run(store, "r", BudgetPolicy("fixed"), seeds=1, top_k=1)
    assert fixed.fraction_used == 1.0 and fixed.spearman == pytest.approx(1.0) and fixed.top_k_recall == 1.0
    results = replay_run(
        store,
        "r",
        BudgetPolicy("sequential", initial=10, step=10, ci_half_width=0.15, negligible=0.15, top_k=1),
        seeds=5,
        top_k=1,
    )
    assert all(r.fraction_used < 1.0 for r in results)
    # The anchor |0.1 - 0.9| = 0.8 dwarfs every other change: its recall must survive the savings.
    full = np.diff(draws.mean(1))
    assert int(np.argmax(np.abs(full))) == 2
    assert all(r.top_k_recall == 1.0 for r in results)


def test_replay_of_a_run_without_rollouts_is_a_store_error(tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    store.create_run("r", {})
    with pytest.raises(StoreError, match="has no rollouts"):
        replay_run(store, "r", BudgetPolicy())


def test_replay_of_chosen_problems_and_an_unknown_problem_id(tmp_path):
    store, _ = _store(tmp_path)
    (only,) = replay_run(store, "r", BudgetPolicy("fixed"), seeds=1, problems=["p"])
    assert only.problem_id == "p"
    with pytest.raises(StoreError, match="no rollouts for nope: pass problem ids of the run"):
        replay_run(store, "r", BudgetPolicy("fixed"), seeds=1, problems=["nope"])


def test_rank_agreement_of_a_constant_estimate_is_zero_not_one():
    from scipy.stats import rankdata

    from thoughtlens.anchors.importance.budget_replay import rank_agreement

    full = np.array([0.0, 0.3, -0.1, 0.05])
    assert rank_agreement(np.zeros(4), full) == 0.0  # an estimate that stopped at all-zero ranks nothing
    assert rank_agreement(np.zeros(4), np.zeros(4)) == 1.0
    est = np.array([0.1, 0.2, -0.3, 0.0])
    ra, rb = rankdata(est), rankdata(full)  # Spearman = Pearson of the ranks, by hand
    expected = ((ra - ra.mean()) * (rb - rb.mean())).sum() / np.sqrt(
        ((ra - ra.mean()) ** 2).sum() * ((rb - rb.mean()) ** 2).sum()
    )
    assert rank_agreement(est, full) == pytest.approx(expected)
