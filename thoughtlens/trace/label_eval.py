"""Evaluating sentence labellers: first-tag accuracy, macro-F1, confusion matrix, leave-problems-out CV."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import GroupKFold

from thoughtlens.errors import ThoughtlensError
from thoughtlens.trace.categories import ALL_TAGS, CATEGORIES
from thoughtlens.trace.label_learned import ClassifierWeights, sentence_features, train_classifier


@dataclass(frozen=True)
class LabelScores:
    """accuracy: first-tag accuracy; macro_f1: unweighted mean F1 over the true categories; n: sentences;
    confusion: DataFrame of counts, rows = true tag, columns = predicted tag."""

    accuracy: float
    macro_f1: float
    n: int
    confusion: pd.DataFrame


def score_labels(true: Sequence[str], predicted: Sequence[str]) -> LabelScores:
    """Scores of predicted first tags against true first tags (macro-F1 over the categories present in `true`)."""
    if len(true) != len(predicted) or not true:
        raise ThoughtlensError(
            f"need equal, non-empty label lists (got {len(true)} true, {len(predicted)} predicted); "
            "label every sentence"
        )
    present = [c for c in ALL_TAGS if c in set(true)]
    used = [c for c in ALL_TAGS if c in set(true) | set(predicted)]
    cm = confusion_matrix(true, predicted, labels=used)
    return LabelScores(
        accuracy=float(accuracy_score(true, predicted)),
        macro_f1=float(f1_score(true, predicted, labels=present, average="macro", zero_division=0)),
        n=len(true),
        confusion=pd.DataFrame(cm, index=used, columns=used),
    )


def majority_baseline(true: Sequence[str]) -> tuple[str, float]:
    """(most frequent tag, its share): the accuracy of always predicting it."""
    values, counts = np.unique(np.asarray(true), return_counts=True)
    k = int(counts.argmax())
    return str(values[k]), float(counts[k] / counts.sum())


def per_problem_hits(
    predictions: Sequence[Sequence[str]], labels: Sequence[Sequence[str]], groups: Sequence[str], traces: Sequence[int]
) -> dict[str, np.ndarray]:
    """{problem: [n_sentences] 1.0 where the predicted tag is the label, else 0.0}, over the traces `traces`
    (indices into predictions / labels / groups), problems sorted: the unit of the paired comparisons."""
    hits: dict[str, list[bool]] = {}
    for t in traces:
        hits.setdefault(groups[t], []).extend(p == y for p, y in zip(predictions[t], labels[t]))
    return {g: np.array(hits[g], float) for g in sorted(hits)}


Fit = Callable[[list[Sequence[str]], list[Sequence[str]]], Callable[[Sequence[str]], list]]


def group_cv_predictions(
    traces: Sequence[Sequence[str]],
    labels: Sequence[Sequence[str]],
    groups: Sequence[str],
    fit: Fit,
    *,
    n_splits: int = 5,
    on_fold: Callable[[int, int], None] | None = None,
    cache_dir: str | Path | None = None,
    only_cached: bool = False,
) -> list[list]:
    """Leave-problems-out predictions of any labeller: each trace is predicted by a labeller fitted on
    traces of *other* problems only (GroupKFold over `groups`, one group per problem).

    traces[t]: sentences of trace t; labels[t]: their first tags; fit(train_traces, train_labels) returns
    a function from the sentences of one trace (in order) to one prediction per sentence: a tag, or anything
    JSON holds (scripts/category_encoder_sweep.py keeps {tag: probability}). on_fold(k, n_folds)
    is called after each fold. cache_dir: each fold's predictions are written there as it ends
    (`fold_K.json`) and read back instead of refitting, so a long CV that is interrupted resumes.
    only_cached: fit nothing; the traces of folds not in `cache_dir` get empty predictions (a partial report).
    """
    if not (len(traces) == len(labels) == len(groups)):
        raise ThoughtlensError("traces, labels and groups must have one entry per trace")
    n_groups = len(set(groups))
    if n_groups < 2:
        raise ThoughtlensError(f"cross-validation needs traces of >= 2 problems (got {n_groups}); add problems")
    preds: list[list] = [[] for _ in traces]
    folds = list(GroupKFold(n_splits=min(n_splits, n_groups)).split(np.zeros(len(traces)), groups=groups))
    for k, (train_idx, test_idx) in enumerate(folds):
        cached = Path(cache_dir) / f"fold_{k}.json" if cache_dir is not None else None
        key = {"test": [int(t) for t in test_idx], "n_sentences": [len(traces[t]) for t in test_idx]}
        stored = json.loads(cached.read_text()) if cached is not None and cached.is_file() else None
        if stored is not None and stored["key"] == key:
            for t, p in zip(test_idx, stored["predictions"]):
                preds[t] = p
        elif only_cached:
            continue
        else:
            predict = fit([traces[t] for t in train_idx], [labels[t] for t in train_idx])
            for t in test_idx:
                preds[t] = list(predict(traces[t]))
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".tmp")
                tmp.write_text(json.dumps({"key": key, "predictions": [preds[t] for t in test_idx]}))
                tmp.replace(cached)  # atomic: a kill mid-write leaves no half file
        if on_fold:
            on_fold(k, len(folds))
    return preds


def cross_validated_predictions(
    traces: Sequence[Sequence[str]],
    labels: Sequence[Sequence[str]],
    embeddings: Sequence[np.ndarray],
    groups: Sequence[str],
    *,
    n_splits: int = 5,
    **train_kwargs,
) -> list[list[str]]:
    """Leave-problems-out predictions of the learned labeller (`group_cv_predictions`).

    traces[t]: sentences of trace t; labels[t]: their first tags; embeddings[t]: [n_sentences_t, 384].
    """
    if len(embeddings) != len(traces):
        raise ThoughtlensError("traces, labels, embeddings and groups must have one entry per trace")
    feats = {id(s): sentence_features(s, e) for s, e in zip(traces, embeddings)}

    def fit(train_traces, train_labels):
        x = np.vstack([feats[id(s)] for s in train_traces])
        weights: ClassifierWeights = train_classifier(x, [tag for ls in train_labels for tag in ls], **train_kwargs)
        return lambda s: [weights.classes[k] for k in weights.predict_proba(feats[id(s)]).argmax(axis=1)]

    return group_cv_predictions(traces, labels, groups, fit, n_splits=n_splits)


def confusion_markdown(confusion: pd.DataFrame) -> str:
    """A confusion matrix as a Markdown table (rows = true, columns = predicted), short column names."""
    short = {c: "".join(w[0] for w in c.split("_")).upper() for c in list(CATEGORIES) + ["unknown"]}
    cols = [short.get(c, c) for c in confusion.columns]
    lines = ["| true \\ predicted | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 2) + "|"]
    for name, row in confusion.iterrows():
        lines.append(
            f"| {name} ({short.get(name, name)}) | " + " | ".join(str(int(v)) for v in row) + f" | {int(row.sum())} |"
        )
    return "\n".join(lines)
