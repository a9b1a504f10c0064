"""Directions and probes on synthetic data with a planted concept, checked against plain numpy / sklearn."""

from __future__ import annotations

import numerics
import numpy as np
import pandas as pd
import pytest
import torch

from thoughtlens.errors import ConfigError
from thoughtlens.represent.directions import (
    auroc,
    diff_in_means,
    direction,
    direction_sweep,
    pca_direction,
    probe_direction,
)
from thoughtlens.represent.probes import control_labels, fit_probe, group_splits, layer_sweep, surface_types
from thoughtlens.represent.sentence_activations import SentenceActivations

D = 16


def _planted(n: int = 200, shift: float = 3.0, seed: int = 0):
    """Two sets differing along a known unit axis, plus isotropic noise."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=D)
    axis /= np.linalg.norm(axis)
    a = rng.normal(size=(n, D)) + shift * axis
    b = rng.normal(size=(n, D))
    return a, b, axis


def _cos(u, v) -> float:
    u, v = np.asarray(u, float), np.asarray(v, float)
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_directions_recover_the_planted_axis():
    a, b, axis = _planted()
    # the same float64 difference of means, rounded once to float32
    numerics.assert_close(diff_in_means(a, b), a.mean(0) - b.mean(0), dtype=torch.float32)
    for d in (diff_in_means(a, b), pca_direction(a, b), probe_direction(a, b)):
        assert _cos(d, axis) > 0.9
        # scaled to the mean difference's length along its own axis: comparable with diff-in-means
        assert abs(float(d.norm()) - 3.0) < 0.6
    with pytest.raises(ConfigError, match="unknown direction method"):
        direction(a, b, "ica")


def test_auroc_equals_sklearn_and_the_sweep_finds_the_separable_layer():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1, 1, 50), rng.normal(0, 1, 70)
    # an AUROC (<= 1) from a rank sum vs sklearn's trapezoids over 120 points: float64 rounding
    want = roc_auc_score(np.r_[np.ones(50), np.zeros(70)], np.r_[pos, neg])
    assert abs(auroc(pos, neg) - want) <= numerics.tol(torch.float64, 1.0, depth=120)
    a, b, _ = _planted(100)
    noise_a, noise_b = np.random.default_rng(2).normal(size=(2, 100, D))
    scores = direction_sweep({0: (noise_a, noise_b), 5: (a, b)}, methods=["diff_in_means", "pca", "probe"])
    by = {(s.layer, s.method): s.auroc for s in scores}
    assert all(by[(5, m)] > 0.95 for m in ("diff_in_means", "pca", "probe"))
    assert all(abs(by[(0, m)] - 0.5) < 0.15 for m in ("diff_in_means", "pca", "probe"))


def test_group_splits_never_share_a_group():
    groups = np.repeat(np.arange(7), 5)
    folds = group_splits(groups, n_splits=4)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(35))  # each row tested exactly once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])


def _grouped_task(n_groups: int = 12, per: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=D)
    X = rng.normal(size=(n_groups * per, D))
    labels = np.where(X @ w > 0, "yes", "no")
    groups = np.repeat(np.arange(n_groups), per)
    return X, labels, groups, w


def test_probe_learns_a_linear_concept_and_the_control_task_is_not_learned():
    X, y, g, w = _grouped_task()
    types = [f"type{i % 40}" for i in range(len(y))]  # surface types unrelated to the concept
    res = fit_probe(X, y, g, control_types=types, n_splits=4)
    assert res.score > 0.9 and res.ci[0] <= res.score <= res.ci[1]
    assert res.auroc > 0.95
    assert res.control_score < 0.7 and res.selectivity > 0.2
    # regression: Spearman of out-of-fold predictions with a linear target
    target = X @ w + np.random.default_rng(3).normal(scale=0.3, size=len(X))
    reg = fit_probe(X, target, g, task="regress", n_splits=4)
    from scipy.stats import spearmanr

    # a correlation (<= 1), computed by the same scipy call: float64 rounding at most
    assert reg.score > 0.9
    assert abs(reg.score - spearmanr(target, reg.predictions).statistic) <= numerics.tol(torch.float64, 1.0)


def test_control_labels_follow_types_and_the_label_distribution():
    labels = np.array(["a"] * 60 + ["b"] * 40)
    types = [f"t{i % 50}" for i in range(100)]
    ctl = control_labels(labels, types, seed=0)
    for t in set(types):  # one label per type
        assert len(set(ctl[[i for i, x in enumerate(types) if x == t]])) == 1
    assert set(ctl) <= {"a", "b"}
    assert surface_types(["Wait, no.", "so the", ""]) == ["wait", "so", ""]


def test_layer_sweep_over_sentence_activations():
    X, y, g, _ = _grouped_task(per=10)
    noise = np.random.default_rng(4).normal(size=X.shape)
    acts = SentenceActivations(
        ["blocks.0.hook_resid_post", "blocks.3.hook_resid_post"],
        {"mean": np.stack([noise, X]).astype(np.float32)},
        pd.DataFrame({"text": ["w"] * len(y)}),
    )
    sweep = layer_sweep(acts, y, g, n_splits=3)
    assert [r.layer for r in sweep.rows] == [0, 3] and sweep.best().layer == 3
    assert sweep.rows[0].score < 0.75


def test_bad_input_gets_one_line_errors():
    X, y, g, _ = _grouped_task(per=5)
    cases = [
        (lambda: fit_probe(X, np.array(["same"] * len(y)), g), "one class"),
        (lambda: fit_probe(X, y, np.zeros(len(y))), ">= 2 groups"),
        (lambda: fit_probe(X[:10], y, g), "one row per item"),
        (lambda: fit_probe(np.where(np.eye(len(X), D) > 0, np.nan, X), y, g), "NaN"),
        (lambda: fit_probe(X, np.ones(len(y)), g, task="regress"), "constant"),
        (lambda: fit_probe(X, y, g, task="cluster"), "unknown probe task"),
        (lambda: diff_in_means(X, X[:, :3]), "same width"),
        (lambda: diff_in_means(X[:0], X), "at least one row"),
    ]
    acts = SentenceActivations(["blocks.0.hook_resid_post"], {"mean": X[None].astype(np.float32)}, pd.DataFrame())
    cases += [
        (lambda: layer_sweep(acts, y, g, layers=[5]), "layer 5 is not among the collected layers"),
        (lambda: layer_sweep(acts, y, g, control=True), "text"),
    ]
    for fn, match in cases:
        with pytest.raises(ConfigError, match=match) as e:
            fn()
        assert "\n" not in str(e.value)
    assert isinstance(diff_in_means(X, X), torch.Tensor)
