"""Directions in activation space from two labelled sets: difference in means, PCA of differences, probe weights.

    d = diff_in_means(acts_harmful, acts_harmless)           # [d_model], Arditi et al. 2024
    sweep = direction_sweep({L: (a_L, b_L) for L in layers}) # where is the concept most separable?

Sets are [n, d] arrays (one row per prompt or sentence, e.g. `SentenceActivations.get(layer)`).
Directions are returned in activation units (not normalised) so that `add_direction(model, hook, d)`
adds the average difference itself; normalise with `d / d.norm()` for projections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from thoughtlens.errors import ConfigError
from thoughtlens.stats import group_resamples

METHODS = ("diff_in_means", "pca", "probe")


def _two_sets(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ConfigError(
            f"the two sets must be [n, d] arrays of the same width, got {a.shape} and {b.shape}: "
            "collect both at the same hook"
        )
    if len(a) < 1 or len(b) < 1:
        raise ConfigError(f"each set needs at least one row, got {len(a)} and {len(b)}: both labels must occur")
    return a, b


def diff_in_means(a, b) -> torch.Tensor:
    """mean(a) - mean(b): [d]. Arditi et al. 2024 (refusal_direction, pipeline/submodules/generate_directions.py,
    `get_mean_diff`: harmful mean minus harmless mean, per layer and position)."""
    a, b = _two_sets(a, b)
    return torch.from_numpy(a.mean(0) - b.mean(0)).float()


def pca_direction(a, b, *, seed: int = 0) -> torch.Tensor:
    """First principal direction of paired differences a_i - b_pi(i) (uncentred SVD, as RepE's PCA of
    differences, Zou et al. 2023), signed to agree with the difference in means and scaled to its length
    along that axis, so it is comparable with `diff_in_means`."""
    a, b = _two_sets(a, b)
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    diffs = a[rng.permutation(len(a))[:n]] - b[rng.permutation(len(b))[:n]]
    v = np.linalg.svd(diffs, full_matrices=False)[2][0]
    mean_diff = a.mean(0) - b.mean(0)
    v = v * np.sign(v @ mean_diff or 1.0)
    return torch.from_numpy(v * (v @ mean_diff)).float()


def probe_direction(a, b, *, C: float = 1.0) -> torch.Tensor:
    """The weight vector of a logistic regression separating a (1) from b (0), on standardised features
    mapped back to activation units, scaled like `pca_direction`."""
    from sklearn.linear_model import LogisticRegression

    a, b = _two_sets(a, b)
    x = np.vstack([a, b])
    y = np.r_[np.ones(len(a)), np.zeros(len(b))]
    scale = x.std(0) + 1e-8
    clf = LogisticRegression(C=C, max_iter=2000).fit((x - x.mean(0)) / scale, y)
    w = clf.coef_[0] / scale
    v = w / np.linalg.norm(w)
    return torch.from_numpy(v * (v @ (a.mean(0) - b.mean(0)))).float()


def direction(a, b, method: str = "diff_in_means") -> torch.Tensor:
    """One of METHODS by name."""
    fns = {"diff_in_means": diff_in_means, "pca": pca_direction, "probe": probe_direction}
    if method not in fns:
        raise ConfigError(f"unknown direction method '{method}': use one of {', '.join(METHODS)}")
    return fns[method](a, b)


def auroc(scores_pos, scores_neg) -> float:
    """P(score of a random positive > score of a random negative), ties counting half (Mann-Whitney)."""
    from scipy.stats import rankdata

    s = np.r_[scores_pos, scores_neg]
    r = rankdata(s)
    n1, n0 = len(scores_pos), len(scores_neg)
    return float((r[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@dataclass
class DirectionScore:
    layer: int
    method: str
    auroc: float  # held-out detection: projection of held-out rows on the direction from the training rows
    norm: float  # length of the direction (activation units)
    cosine_with_diff_in_means: float


def direction_sweep(
    sets: Mapping[int, tuple[np.ndarray, np.ndarray]],
    *,
    methods: Sequence[str] = ("diff_in_means",),
    test_fraction: float = 0.5,
    seed: int = 0,
) -> list[DirectionScore]:
    """For each layer and method: the direction from a random half, and its AUROC on the other half.

    sets: layer -> (rows of concept a, rows of concept b). Rows are split at random here; for grouped data
    (sentences of the same problem) use `thoughtlens.represent.probes.layer_sweep`, which splits by group.
    """
    if not sets:
        raise ConfigError("no layers given: pass {layer: (rows_a, rows_b)}")
    rng = np.random.default_rng(seed)
    out = []
    for layer, (a, b) in sets.items():
        a, b = _two_sets(a, b)
        if len(a) < 2 or len(b) < 2:
            raise ConfigError(f"layer {layer}: each set needs >= 2 rows to hold some out, got {len(a)} and {len(b)}")
        ia, ib = rng.permutation(len(a)), rng.permutation(len(b))
        ka, kb = max(1, int(len(a) * (1 - test_fraction))), max(1, int(len(b) * (1 - test_fraction)))
        dm = a[ia[:ka]].mean(0) - b[ib[:kb]].mean(0)
        for m in methods:
            d = direction(a[ia[:ka]], b[ib[:kb]], m).double().numpy()
            score = auroc(a[ia[ka:]] @ d, b[ib[kb:]] @ d)
            cos = float(d @ dm / (np.linalg.norm(d) * np.linalg.norm(dm) + 1e-12))
            out.append(DirectionScore(int(layer), m, score, float(np.linalg.norm(d)), cos))
    return out


def sweep_table(scores: Sequence[DirectionScore]) -> list[dict]:
    return [asdict(s) for s in scores]


@dataclass
class HeldOutAUROC:
    method: str
    auroc: float  # pooled out-of-fold: each row scored by the direction fitted without its group
    ci: tuple[float, float]  # percentile bootstrap over groups (problems)
    fold_aurocs: list[float]
    n_pos: int
    n_neg: int


def held_out_auroc(
    X, y, groups, *, method: str = "diff_in_means", n_splits: int = 5, n_boot: int = 1000, seed: int = 0
) -> HeldOutAUROC:
    """Detection quality of a direction, held out by group: for each GroupKFold split, the direction from the
    training rows (y True vs False), and the held-out rows' projections on it as scores.

    X: [n, d]; y: [n] bool (the concept); groups: [n] (e.g. the problem: a problem is never in both halves).
    """
    from sklearn.model_selection import GroupKFold

    X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y).astype(bool), np.asarray(groups)
    if X.ndim != 2 or len(X) != len(y) or len(y) != len(groups):
        raise ConfigError(
            f"X must be [n, d] with one label and one group per row, got {X.shape}, {len(y)}, {len(groups)}"
        )
    if y.all() or not y.any():
        raise ConfigError("the labels have one class: the concept must be present in some rows and absent in others")
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise ConfigError(f"held-out AUROC needs >= 2 groups, got {n_groups}: pass the problem of each row")
    scores, folds = np.full(len(y), np.nan), []
    for tr, te in GroupKFold(n_splits=min(n_splits, n_groups)).split(X, y, groups):
        if y[tr].all() or not y[tr].any():
            continue
        d = direction(X[tr][y[tr]], X[tr][~y[tr]], method).double().numpy()
        scores[te] = X[te] @ d
        if y[te].any() and not y[te].all():
            folds.append(auroc(scores[te][y[te]], scores[te][~y[te]]))
    ok = np.isfinite(scores)
    s, t, g = scores[ok], y[ok], groups[ok]
    est = auroc(s[t], s[~t])
    draws = []
    for rows in group_resamples(g, n_boot, seed):
        if t[rows].any() and not t[rows].all():
            draws.append(auroc(s[rows][t[rows]], s[rows][~t[rows]]))
    lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
    return HeldOutAUROC(method, float(est), (float(lo), float(hi)), folds, int(t.sum()), int((~t).sum()))
