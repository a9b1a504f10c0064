"""Held-out-by-group detection AUROC of directions, and the proportion intervals used for steering rates."""

from __future__ import annotations

import numerics
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from thoughtlens.errors import ConfigError
from thoughtlens.represent.directions import held_out_auroc


def _planted(n_groups=10, per=30, d=16, shift=1.5, seed=0):
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=d)
    axis /= np.linalg.norm(axis)
    y = rng.random(n_groups * per) < 0.3
    X = rng.normal(size=(len(y), d)) + shift * y[:, None] * axis
    return X, y, np.repeat(np.arange(n_groups), per)


@pytest.mark.parametrize("method", ["diff_in_means", "pca", "probe"])
def test_a_planted_concept_is_detected_and_noise_is_not(method):
    X, y, g = _planted()
    r = held_out_auroc(X, y, g, method=method, n_boot=200)
    assert r.auroc > 0.8 and r.ci[0] > 0.7 and r.n_pos == y.sum()
    noise = held_out_auroc(np.random.default_rng(1).normal(size=X.shape), y, g, method=method, n_boot=200)
    assert noise.ci[0] < 0.5 < noise.ci[1]


def test_two_groups_by_hand():
    X, y, g = _planted(n_groups=2)
    r = held_out_auroc(X, y, g, n_splits=2, n_boot=10)
    scores = np.empty(len(y))
    for test in (0, 1):  # the direction from the other group, its projection as the score
        tr, te = g != test, g == test
        d = X[tr][y[tr]].mean(0) - X[tr][~y[tr]].mean(0)
        scores[te] = X[te] @ d
    # AUROCs (<= 1) of float64 scores, sklearn's trapezoids over up to len(y) points: float64 rounding
    want = sorted(roc_auc_score(y[g == t], scores[g == t]) for t in (0, 1))
    numerics.assert_close(sorted(r.fold_aurocs), want, dtype=torch.float64, depth=len(y), scale=1.0)
    numerics.assert_close(r.auroc, roc_auc_score(y, scores), dtype=torch.float64, depth=len(y), scale=1.0)


def test_a_concept_that_is_only_the_problem_does_not_transfer_to_held_out_problems():
    """Labels constant within a problem and a per-problem offset: a random split would find it; by problem, not."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(40), 10)
    y = np.isin(g, rng.permutation(40)[:20])
    X = rng.normal(size=(40, 8))[g] * 3 + rng.normal(size=(len(g), 8))
    by_row = held_out_auroc(X, y, np.arange(len(g)), n_boot=50)  # every row its own group: problems leak
    by_problem = held_out_auroc(X, y, g, n_boot=200)
    assert by_row.auroc > 0.7  # the group offsets look like a concept when problems are split across folds
    assert by_problem.auroc < by_row.auroc - 0.15 and by_problem.ci[0] < 0.5 < by_problem.ci[1]


def test_held_out_auroc_bad_input():
    X, y, g = _planted()
    with pytest.raises(ConfigError, match="one class"):
        held_out_auroc(X, np.ones(len(y), bool), g)
    with pytest.raises(ConfigError, match="2 groups"):
        held_out_auroc(X, y, np.zeros(len(y)))
    with pytest.raises(ConfigError, match=r"\[n, d\]"):
        held_out_auroc(X[:, 0], y, g)


def test_context_features_by_hand():
    from thoughtlens.represent.probes import context_features

    X = np.arange(10, dtype=float).reshape(5, 2)  # sentences 0-2 of trace a, 0-1 of trace b
    got = context_features(X, ["a", "a", "a", "b", "b"], k=1)
    want = np.array(
        [[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 0, 0], [0, 0, 6, 7, 8, 9], [6, 7, 8, 9, 0, 0]],
        dtype=float,
    )
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ConfigError, match="one trace id per row"):
        context_features(X, ["a"], k=1)
