"""Adaptive rollout budgets (thoughtlens.anchors.importance.budget): the CI against formulas re-derived here, the
round rules on hand-built stats, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from thoughtlens.anchors.importance.budget import (
    BudgetPolicy,
    PositionStats,
    importance_ci,
    next_round,
    settled,
    simulate,
)
from thoughtlens.errors import ConfigError


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    # Wilson (1927), written out: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, c - h), min(1.0, c + h)


def test_importance_ci_is_newcombes_hybrid_score_interval():
    stats = [PositionStats(10, 10, 7), PositionStats(12, 10, 2), PositionStats(20, 20, 20), PositionStats(5, 5, 0)]
    z = 1.959963984540054
    est, low, high = importance_ci(stats, z)
    for i in range(3):
        a, b = stats[i], stats[i + 1]
        p0, p1 = a.n_correct / a.n_answered, b.n_correct / b.n_answered
        l0, u0 = _wilson(a.n_correct, a.n_answered, z)
        l1, u1 = _wilson(b.n_correct, b.n_answered, z)
        d = p1 - p0  # the paper's resampling importance: acc(R_{i+1}) - acc(R_i), acc over answered rollouts
        assert est[i] == pytest.approx(d, abs=1e-12)
        assert low[i] == pytest.approx(max(-1, d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)), abs=1e-12)
        assert high[i] == pytest.approx(min(1, d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)), abs=1e-12)
    assert BudgetPolicy(confidence=0.95).z == pytest.approx(z, abs=1e-9)


def test_a_position_with_no_answer_gives_the_uninformative_interval():
    est, low, high = importance_ci([PositionStats(4, 0, 0), PositionStats(4, 4, 4)], 1.96)
    assert est[0] == 1.0 and high[0] == 1.0 and low[0] < 0.5  # acc 0.0 (paper) but CI [0, 1] at position 0


def test_fixed_budget_asks_for_everything_missing_at_once():
    stats = [PositionStats(0, 0, 0), PositionStats(3, 3, 1), PositionStats(10, 10, 5)]
    assert next_round(BudgetPolicy("fixed"), stats, cap=10) == {0: 10, 1: 7}
    assert next_round(BudgetPolicy("fixed", max_rollouts=4), stats[:2], cap=10) == {0: 4, 1: 1}


def test_sequential_starts_with_initial_then_refines_only_unsettled_sentences():
    pol = BudgetPolicy("sequential", initial=4, step=3, ci_half_width=0.3, negligible=0.0, top_k=0)
    assert next_round(pol, [PositionStats(0, 0, 0)] * 3, cap=20) == {0: 4, 1: 4, 2: 4}
    # Sentence 0 (positions 0-1) has a narrow CI, sentence 1 (positions 1-2) a wide one.
    stats = [PositionStats(40, 40, 40), PositionStats(40, 40, 40), PositionStats(4, 4, 2)]
    assert settled(pol, stats).tolist() == [True, False]
    assert next_round(pol, stats, cap=20) == {2: 3}  # position 1 is at 40 > cap: never more
    full = [PositionStats(20, 20, 10)] * 3
    assert next_round(pol, full, cap=20) == {}


def test_top_k_rule_stops_sentences_that_cannot_reach_the_top():
    # Sentence 1 jumps 0 -> 1 (a clear anchor); sentence 0 is flat at 1/2: with top_k=1 it is out.
    stats = [PositionStats(30, 30, 15), PositionStats(30, 30, 0), PositionStats(30, 30, 30)]
    pol = BudgetPolicy("sequential", ci_half_width=0.0, negligible=0.0, top_k=1)
    est, low, high = importance_ci(stats, pol.z)
    assert max(abs(low[0]), abs(high[0])) < low[1]  # the rule's premise, checked from the CI itself
    assert settled(pol, stats).tolist() == [True, False]


def test_hybrid_refines_sharp_changes_even_when_settled():
    stats = [PositionStats(30, 30, 0), PositionStats(30, 30, 30), PositionStats(30, 30, 30)]
    loose = dict(ci_half_width=1.0, negligible=0.0, top_k=0, step=5)
    assert next_round(BudgetPolicy("sequential", **loose), stats, cap=50) == {}
    assert next_round(BudgetPolicy("hybrid", jump=0.5, **loose), stats, cap=50) == {0: 5, 1: 5}


def test_simulate_never_exceeds_the_cap_and_spends_less_on_flat_traces():
    rng = np.random.default_rng(0)
    p = np.r_[np.ones(10), np.zeros(10)]  # one sharp anchor between 9 and 10, otherwise flat
    draws = rng.random((20, 100)) < p[:, None]
    used = simulate(BudgetPolicy("sequential", negligible=0.1, ci_half_width=0.1), draws)
    assert used.max() <= 100 and used.min() >= 10
    assert used[9] == used[10] == 100 or used.sum() < 2000
    assert simulate(BudgetPolicy("fixed"), draws).tolist() == [100] * 20


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="greedy"), "unknown budget 'greedy'"),
        (dict(initial=0), "initial must be an integer >= 1"),
        (dict(step=2.5), "step must be an integer >= 1"),
        (dict(confidence=1.0), r"confidence must lie in \(0, 1\)"),
        (dict(ci_half_width=-0.1), "ci_half_width must be a number >= 0"),
        (dict(top_k=-1), "top_k must be an integer >= 0"),
        (dict(max_rollouts=0), "max_rollouts must be an integer >= 1"),
        (dict(total_fraction=0), r"total_fraction must lie in \(0, 1\]"),
        (dict(total_fraction=1.5), r"total_fraction must lie in \(0, 1\]"),
        (dict(kind="fixed", total_fraction=0.25), "needs --budget sequential or hybrid"),
    ],
)
def test_bad_policy_is_a_one_line_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BudgetPolicy(**kwargs)


def test_total_cap_serves_the_widest_ci_first_and_is_never_exceeded():
    # Sentence 2 (positions 2 and 3) rests on 2 answered rollouts at position 3: by far the widest CI.
    stats = [PositionStats(10, 10, 0), PositionStats(10, 10, 5), PositionStats(10, 10, 10), PositionStats(10, 2, 1)]
    free = next_round(BudgetPolicy("sequential", step=4), stats, cap=20)
    assert free == {0: 4, 1: 4, 2: 4, 3: 4}  # without the cap every open position gets a step
    # cap 0.6 x 4 positions x 20 = 48 rollouts, 40 spent: 8 left, i.e. two steps, for positions 2 and 3
    assert next_round(BudgetPolicy("sequential", step=4, total_fraction=0.6), stats, cap=20) == {2: 4, 3: 4}
    assert next_round(BudgetPolicy("sequential", step=4, total_fraction=0.5), stats, cap=20) == {}  # 40 of 40 spent
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 30)
    draws = rng.random((30, 100)) < p[:, None]
    for kind in ("sequential", "hybrid"):
        used = simulate(BudgetPolicy(kind, total_fraction=0.25), draws)
        assert used.sum() <= 0.25 * 30 * 100 and used.min() >= 10 and used.max() > 10  # spent unevenly


def test_record_leaves_unset_later_options_out_so_old_run_ids_stay():
    from dataclasses import asdict

    old = {k: v for k, v in asdict(BudgetPolicy("hybrid")).items() if k != "total_fraction"}
    assert BudgetPolicy("hybrid").record() == old
    assert BudgetPolicy("hybrid", total_fraction=0.25).record() == {**old, "total_fraction": 0.25}
