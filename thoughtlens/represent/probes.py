"""Linear probes with splits grouped by problem, control tasks and selectivity, and a layer sweep.

    res = fit_probe(X, labels, groups)                  # logistic, GroupKFold: a problem is never in train and test
    sweep = layer_sweep(acts, labels, groups, layers=range(0, 30, 3), control=True)
    sweep.best().score, sweep.best().selectivity

Scores are computed on out-of-fold predictions pooled over folds: accuracy (and macro AUROC) for
classification, Spearman for regression. CIs resample *groups* (problems), since sentences of one
problem are not independent. Control task (Hewitt and Liang 2019, "Designing and interpreting probes with
control tasks"): each surface type (the sentence's first word, lower-cased) gets a label drawn at random from
the empirical label distribution; a probe that also fits this task is memorising surface form.
Selectivity = task score - control score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from thoughtlens.errors import ConfigError
from thoughtlens.stats import group_resamples

TASKS = ("classify", "regress")


def group_splits(groups: Sequence, n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) per fold; every group's rows fall in exactly one test fold and never in its
    training rows (sklearn's GroupKFold)."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ConfigError(f"grouped splits need >= 2 groups (problems), got {n_groups}: pass more problems")
    k = min(n_splits, n_groups)
    if k < 2:
        raise ConfigError(f"n_splits must be >= 2, got {n_splits}")
    return list(GroupKFold(n_splits=k).split(np.zeros(len(groups)), groups=groups))


def control_labels(labels: Sequence, types: Sequence[str], *, seed: int = 0) -> np.ndarray:
    """Hewitt-Liang control task: one random label per surface type, drawn from the label distribution."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    values, counts = np.unique(labels, return_counts=True)
    table = {t: values[rng.choice(len(values), p=counts / counts.sum())] for t in sorted(set(types))}
    return np.array([table[t] for t in types])


def surface_types(texts: Sequence[str]) -> list[str]:
    """The first word of each text, lower-cased: the 'type' of the control task."""
    return [(t.split() or [""])[0].lower().strip(".,:;!?") for t in texts]


def _check(X, y, groups, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if task not in TASKS:
        raise ConfigError(f"unknown probe task '{task}': use one of {', '.join(TASKS)}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    groups = np.asarray(groups)
    if X.ndim != 2:
        raise ConfigError(f"features must be [n, d], got shape {X.shape}")
    if not (len(X) == len(y) == len(groups)):
        raise ConfigError(
            f"features ({len(X)}), targets ({len(y)}) and groups ({len(groups)}) must have one row per item"
        )
    if not np.isfinite(X).all():
        raise ConfigError("features contain NaN (a sentence with no tokens?): drop those rows first")
    if task == "classify" and len(np.unique(y)) < 2:
        raise ConfigError(f"the labels have one class ({np.unique(y)[:1].tolist()}): a probe needs at least two")
    if task == "regress":
        y = y.astype(float)
        if not np.isfinite(y).all():
            raise ConfigError("regression targets contain NaN: drop those rows (pass rows=np.isfinite(y))")
        if np.ptp(y) == 0:
            raise ConfigError("the regression target is constant: nothing to predict")
    return X, y, groups


def _model(task: str, C: float, alpha: float):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = LogisticRegression(C=C, max_iter=300) if task == "classify" else Ridge(alpha=alpha)
    return make_pipeline(StandardScaler(), est)


def _score(task: str, y, pred) -> float:
    if task == "classify":
        return float(np.mean(y == pred))
    from scipy.stats import spearmanr

    return float(spearmanr(y, pred).statistic)


def _group_ci(task: str, y, pred, groups, n_boot: int, seed: int, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile CI of the score, resampling groups (problems) with replacement."""
    draws = [_score(task, y[idx], pred[idx]) for idx in group_resamples(groups, n_boot, seed)]
    lo, hi = np.nanpercentile(draws, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


@dataclass
class ProbeResult:
    """Out-of-fold score of a probe (accuracy or Spearman) with a group-bootstrap CI."""

    task: str
    score: float
    ci: tuple[float, float]
    n: int
    n_groups: int
    auroc: float | None = None  # classification: macro one-vs-rest AUROC of the out-of-fold probabilities
    control_score: float | None = None
    selectivity: float | None = None
    layer: int | None = None
    predictions: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("predictions")
        return d


def fit_probe(
    X,
    y,
    groups,
    *,
    task: str = "classify",
    n_splits: int = 5,
    C: float = 1.0,
    alpha: float = 10.0,
    control_types: Sequence[str] | None = None,
    n_boot: int = 500,
    seed: int = 0,
) -> ProbeResult:
    """Cross-validated linear probe. X: [n, d]; y: labels (classify) or numbers (regress); groups: [n] problem ids.

    control_types: surface type of each row (e.g. `surface_types(texts)`): also fit the control task and
    report selectivity (classification only).
    """
    X, y, groups = _check(X, y, groups, task)
    folds = group_splits(groups, n_splits)
    pred = np.empty(len(y), dtype=y.dtype if task == "classify" else float)
    proba = None
    classes = np.unique(y)
    if task == "classify":
        proba = np.zeros((len(y), len(classes)))
    for train, test in folds:
        if task == "classify" and len(np.unique(y[train])) < 2:
            pred[test] = y[train][0]
            continue
        m = _model(task, C, alpha).fit(X[train], y[train])
        pred[test] = m.predict(X[test])
        if proba is not None:
            cols = np.searchsorted(classes, m.classes_)
            proba[np.ix_(test, cols)] = m.predict_proba(X[test])
    score = _score(task, y, pred)
    res = ProbeResult(
        task, score, _group_ci(task, y, pred, groups, n_boot, seed), len(y), len(np.unique(groups)), predictions=pred
    )
    if proba is not None:
        from sklearn.metrics import roc_auc_score

        present = [i for i, c in enumerate(classes) if 0 < (y == c).sum() < len(y)]
        aucs = [roc_auc_score(y == classes[i], proba[:, i]) for i in present]
        res.auroc = float(np.mean(aucs)) if aucs else None
    if control_types is not None and task == "classify":
        ctl = control_labels(y, control_types, seed=seed)
        if len(np.unique(ctl)) > 1:
            res.control_score = fit_probe(X, ctl, groups, task=task, n_splits=n_splits, C=C, n_boot=1, seed=seed).score
            res.selectivity = score - res.control_score
    return res


@dataclass
class Sweep:
    """One ProbeResult per layer."""

    rows: list[ProbeResult]

    def best(self) -> ProbeResult:
        return max(self.rows, key=lambda r: -np.inf if np.isnan(r.score) else r.score)

    def to_dict(self) -> dict:
        b = self.best()
        return {"best_layer": b.layer, "best_score": b.score, "rows": [r.to_dict() for r in self.rows]}


def layer_sweep(
    acts,
    y,
    groups,
    *,
    layers: Sequence[int] | None = None,
    task: str = "classify",
    reduction: str = "mean",
    control: bool = False,
    rows=None,
    n_splits: int = 5,
    C: float = 1.0,
    alpha: float = 10.0,
    n_boot: int = 500,
    seed: int = 0,
    on_progress=None,
) -> Sweep:
    """fit_probe at each layer of a SentenceActivations. rows: optional bool mask of sentences to use.

    control=True fits the control task on surface types read from `acts.meta["text"]`.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    keep = np.ones(len(y), bool) if rows is None else np.asarray(rows, bool)
    layers = acts.layers() if layers is None else list(layers)
    types = None
    if control:
        if "text" not in acts.meta:
            raise ConfigError(
                "control=True needs the sentences' text in acts.meta['text'] (their first word is the type): "
                "collect with sentence_activations(..., texts=SENTENCES) or collect(...), which store it"
            )
        types = [t for t, k in zip(surface_types(acts.meta["text"].astype(str)), keep) if k]
    out = []
    for L in layers:
        X = acts.get(int(L), reduction)[keep]
        r = fit_probe(
            X,
            y[keep],
            groups[keep],
            task=task,
            n_splits=n_splits,
            C=C,
            alpha=alpha,
            control_types=types,
            n_boot=n_boot,
            seed=seed,
        )
        r.layer = int(L)
        out.append(r)
        if on_progress is not None:
            on_progress(1)
    return Sweep(out)


def context_features(X, traces: Sequence, k: int = 1) -> np.ndarray:
    """[n, d] sentence features -> [n, (2k + 1) d]: each sentence's row next to those of its k previous and k next
    sentences of the same trace (zeros past a trace's ends). Rows must be in reading order within each trace.

    A named option for category probes (the sentence's neighbours tell e.g. a plan from its execution), in the
    spirit of the learned labeller's context features; the default probe reads the sentence alone.
    """
    X, traces = np.asarray(X), np.asarray(traces)
    if X.ndim != 2 or len(X) != len(traces):
        raise ConfigError(f"X must be [n, d] with one trace id per row, got {X.shape} and {len(traces)} ids")
    if k < 0:
        raise ConfigError(f"k must be >= 0, got {k}")
    parts = []
    for shift in range(-k, k + 1):
        src = np.arange(len(X)) + shift
        ok = (src >= 0) & (src < len(X))
        ok[ok] = traces[src[ok]] == traces[ok]
        block = np.zeros_like(X)
        block[ok] = X[src[ok]]
        parts.append(block)
    return np.concatenate(parts, axis=1)
