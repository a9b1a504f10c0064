"""Category charts for a page whose store holds no "category_table" / "transition_matrix" artifact (a
published trace, or a run whose categories step has not run): the same computation as
`thoughtlens anchors categories` (`anchors/importance/by_category.py`), applied to the one trace on the page.

With one trace the table pools its sentences (no convergence filter: the page shows every sentence) and its
CI resamples sentences; the transition matrix counts consecutive primary tags, with None for a category that
is never followed (no data), as in the run-level artifact.
"""

from __future__ import annotations

import pandas as pd

from thoughtlens.anchors.importance import by_category as cat
from thoughtlens.errors import ThoughtlensError
from thoughtlens.jsonsafe import json_safe
from thoughtlens.trace.categories import CATEGORIES

# One trace: no convergence filter, sentences pooled, signed values (the page shows what the metric says).
PAGE_RULES = cat.AggregationRules(drop_after_convergence=False, per_trace_mean=False, clip_negative=False)


def categories_in(sentences: list[dict]) -> list[str]:
    """Tags used by any sentence: the taxonomy's in its order (setup -> answer), then others sorted."""
    seen = {t for s in sentences for t in s.get("tags") or []}
    return [c for c in CATEGORIES if c in seen] + sorted(seen - set(CATEGORIES))


def _frame(sentences: list[dict], metric_keys: list[str]) -> pd.DataFrame:
    """Page-data sentences -> the sentence table of anchors/importance/by_category.py (one trace)."""
    rows = [
        {
            "trace_id": "page",
            "sentence_index": i,
            "n_sentences": len(sentences),
            "tags": list(s.get("tags") or []),
            **{k: s["metrics"].get(k) for k in metric_keys},
        }
        for i, s in enumerate(sentences)
    ]
    df = pd.DataFrame(rows, columns=["trace_id", "sentence_index", "n_sentences", "tags", *metric_keys])
    for k in metric_keys:
        df[k] = pd.to_numeric(df[k], errors="coerce")
    return df


def category_table(
    sentences: list[dict], metric_keys: list[str], *, n_resamples: int = 2000, seed: int = 0
) -> list[dict]:
    """Records {category, metric, mean, ci_low, ci_high, n} for every category x metric with data.

    sentences: page-data sentences (need "tags" and "metrics"); metric_keys: metrics to summarise.
    """
    df = _frame(sentences, metric_keys)
    if df["tags"].map(len).sum() == 0 or not metric_keys:
        return []
    table, _ = cat.category_table(df, metric_keys, PAGE_RULES, n_boot=n_resamples, seed=seed)
    table = table[table["n"] > 0]
    records = table[["category", "metric", "mean", "ci_low", "ci_high", "n"]].to_dict("records")
    for r in records:  # one value has no interval
        if r["n"] < 2:
            r["ci_low"] = r["ci_high"] = None
    return json_safe(records)


def transition_matrix(sentences: list[dict], categories: list[str]) -> dict | None:
    """{categories, matrix [C][C] (row = from; None where a category is never followed), counts [C][C]}
    in the order `categories`, or None when no two tagged sentences follow each other."""
    try:
        t = cat.transition_matrix(_frame(sentences, []), skip_unknown=False, n_boot=200)
    except ThoughtlensError:
        return None
    if t.counts.sum() == 0:
        return None
    order = [t.categories.index(c) for c in categories if c in t.categories]
    counts, probs = t.counts[order][:, order], t.probs[order][:, order]
    return json_safe(
        {"categories": [t.categories[i] for i in order], "matrix": probs.round(4), "counts": counts.astype(int)}
    )
