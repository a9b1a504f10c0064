"""Importance metrics against hand-computed values."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from thoughtlens.anchors.importance.metrics import (
    NO_ANSWER,
    Outcome,
    accuracy,
    answer_counts,
    regeneration_curve,
    sentence_metrics,
    smoothed_kl,
)


def test_smoothed_kl_matches_hand_computation():
    p, q = Counter({"a": 3, "b": 1}), Counter({"a": 1, "b": 1, "c": 2})
    alpha = 0.5
    # support {a, b, c}; p = (3.5, 1.5, 0.5) / 5.5 ; q = (1.5, 1.5, 2.5) / 5.5
    ps = np.array([3.5, 1.5, 0.5]) / 5.5
    qs = np.array([1.5, 1.5, 2.5]) / 5.5
    expected = float(np.sum(ps * np.log(ps / qs)))
    assert smoothed_kl(p, q, alpha) == pytest.approx(expected, abs=1e-12)


def test_smoothed_kl_is_finite_and_moderate_on_disjoint_supports():
    n, alpha = 10, 0.5
    kl = smoothed_kl(Counter({"x": n}), Counter({"y": n}), alpha)
    hi, lo = (n + alpha) / (n + 2 * alpha), alpha / (n + 2 * alpha)
    expected = hi * math.log(hi / lo) + lo * math.log(lo / hi)
    assert kl == pytest.approx(expected) and 2.0 < kl < 3.5
    # The paper's 1e-9 smoothing would give about -log(1e-9) ~ 20.7 nats here.
    assert smoothed_kl(Counter({"x": 5}), Counter({"x": 5})) == 0.0
    assert smoothed_kl(Counter(), Counter({"x": 1})) is None
    with pytest.raises(ValueError, match="alpha"):
        smoothed_kl(Counter({"x": 1}), Counter({"x": 1}), 0)


def test_missing_answers_are_their_own_outcome_and_count_as_wrong():
    outs = [Outcome("1/2", True), Outcome("0.5", True), Outcome(None, None), Outcome("3", False)]
    counts = answer_counts(outs)
    assert counts[NO_ANSWER] == 1 and sum(counts.values()) == 4
    assert accuracy(outs) == 0.5
    assert accuracy([]) is None


def test_sentence_metrics_on_a_hand_built_example():
    sents = ["We add 2 and 2.", "That gives 4."]
    right, wrong = Outcome("4", True, "We add 2 and 2."), Outcome("5", False, "Something else entirely.")
    resampled = [
        [right, wrong, wrong, wrong],  # R_0: 1/4 correct
        [right, right, right, wrong],  # R_1: 3/4 correct
        [right, right, right, right],  # R_2: all correct
    ]
    forced = [[wrong, wrong], [right, wrong], [right, right]]
    sims = [np.array([1.0, 0.1, 0.1, 0.1]), np.array([0.9, 0.9, 0.9, 0.2])]
    # The pre-1.0 definitions (KL(kept || resampled), kept - dissimilar): now the named "thoughtlens"
    # conventions; the paper's definitions are tested in tests/anchors/importance/test_anchors_paper_definitions.py.
    rows = sentence_metrics(sents, resampled, forced, similarities=sims, threshold=0.8, conventions="thoughtlens")
    assert rows[0]["accuracy"] == 0.25
    assert rows[0]["resampling_importance_accuracy"] == pytest.approx(0.5)
    # counterfactual: R_0 restricted to dissimilar first sentences = 3 wrong ones -> acc 0
    assert rows[0]["counterfactual_importance_accuracy"] == pytest.approx(0.75)
    assert rows[0]["different_trajectories_fraction"] == 0.75
    assert rows[0]["forced_importance_accuracy"] == pytest.approx(0.5)
    assert rows[1]["forced_importance_accuracy"] == pytest.approx(0.5)
    assert rows[0]["overdeterminedness"] == pytest.approx(1 - 2 / 4)

    def kl(p_counts, q_counts, alpha=0.5):
        """KL(P || Q) in nats of two count vectors over the same outcomes, with additive smoothing alpha."""
        p = (np.array(p_counts, float) + alpha) / (sum(p_counts) + alpha * len(p_counts))
        q = (np.array(q_counts, float) + alpha) / (sum(q_counts) + alpha * len(q_counts))
        return float(np.sum(p * np.log(p / q)))

    # Outcomes ordered ("4", "5"); the thoughtlens conventions smooth with alpha = 0.5 and compare kept || other.
    # resampling: KL(R_{i+1} || R_i); R_0 = (1, 3), R_1 = (3, 1), R_2 = (4, 0)
    assert rows[0]["resampling_importance_kl"] == pytest.approx(kl([3, 1], [1, 3]), rel=1e-12)
    assert rows[1]["resampling_importance_kl"] == pytest.approx(kl([4, 0], [3, 1]), rel=1e-12)
    # counterfactual: KL(R_{i+1} || R_i's dissimilar rollouts) = KL((3, 1) || (0, 3)) for sentence 0;
    # for sentence 1 only R_1's last rollout (similarity 0.2 < 0.8, answer "5") is dissimilar: (0, 1)
    assert rows[0]["counterfactual_importance_kl"] == pytest.approx(kl([3, 1], [0, 3]), rel=1e-12)
    assert rows[1]["counterfactual_importance_kl"] == pytest.approx(kl([4, 0], [0, 1]), rel=1e-12)
    # forced: KL(F_{i+1} || F_i); F_0 = (0, 2), F_1 = (1, 1), F_2 = (2, 0)
    assert rows[0]["forced_importance_kl"] == pytest.approx(kl([1, 1], [0, 2]), rel=1e-12)
    assert rows[1]["forced_importance_kl"] == pytest.approx(kl([2, 0], [1, 1]), rel=1e-12)
    # written out for one cell: p = (4.5, 0.5) / 5, q = (3.5, 1.5) / 5
    assert rows[1]["resampling_importance_kl"] == pytest.approx(
        0.9 * math.log(4.5 / 3.5) + 0.1 * math.log(0.5 / 1.5), rel=1e-12
    )


def test_sentence_metrics_rejects_wrong_number_of_positions():
    with pytest.raises(ValueError, match="3 prefix positions"):
        sentence_metrics(["a.", "b."], [[], []], similarities=[np.zeros(0)] * 2)
    with pytest.raises(ValueError, match="unknown conventions 'both'.*paper"):
        sentence_metrics(["a."], [[], []], similarities=[np.zeros(0)], conventions="both")


def test_regeneration_curve_accuracy_and_agreement():
    curve = regeneration_curve([[Outcome("4", True), Outcome("5", False)], [Outcome("4", True)]], "4")
    assert [(c["k"], c["accuracy"], c["agreement"]) for c in curve] == [(0, 0.5, 0.5), (1, 1.0, 1.0)]
