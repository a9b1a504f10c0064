"""The report page's data: one JSON-able dict, built from a published problem directory or a RunStore.

Schema ``thoughtlens.report/1`` (every optional part may be ``None``; the page then shows the note in
``notes[view]`` instead of the view):

```
{
  "schema": "thoughtlens.report/1",
  "title": str, "source": str,                          # where the data came from (path, run id)
  "problem": {"id": str, "text": str, "gt_answer": str | None},
  "trace": {"text": str,                                # the model's completion (chain of thought + answer)
            "answer": str | None, "is_correct": bool | None},
  "categories": [str],                                  # category order; colours follow this order
  "metrics": [{"key", "label", "description"}],         # the metrics the switcher offers (present ones only)
  "sentences": [{                                       # S sentences, in order; index == position
      "index": int, "start": int, "end": int,           # [start, end) char offsets into trace.text
      "text": str, "tags": [str], "summary": str | None,
      "metrics": {key: float | None},
      "ci": {key: [low, high]},                         # 95 % CIs where the producer computed them
      "depends_on": [int],                              # labelled dependencies (earlier sentences)
      "answers": {"kept": {answer: p}, "resampled": {answer: p},
                  "n_kept": int | None, "n_resampled": int | None, "note": str} | None,
      "alternatives": [{"text", "count", "similarity": float | None, "similar": bool | None}] | None,
  }],
  "similarity_threshold": float | None,                 # cosine threshold behind "similar"
  "matrices": {                                         # row = cause sentence, column = affected sentence
      "suppression": [S][S] | None,                     # effect on S_col of suppressing attention to S_row
      "counterfactual": [S][S] | None,                  # effect on S_col of resampling S_row
      "receiver_head_kurtosis": [layers][heads] | None,
      "receiver_scores": [S] | None,
      "head_attention": [{"layer", "head", "matrix": [S][S] (row = query sentence, col = key)}] | None,
  },
  "category_table": [{"category", "metric", "mean", "ci_low", "ci_high", "n"}] | None,
  "category_table_source": str | None,
  "transition_matrix": {"categories": [C], "matrix": [C][C] (row = from, col = to; rows sum to 1),
                        "counts": [C][C]} | None,
  "sae_features": {...} | None,                         # the SAE feature panel (schema: report/sae_panel.py)
  "transplant_curve": {"points": [{k, rate, ci_low, ci_high, n, copied}], "cot_on_page": bool} | None,
                                                        # (report/transplant_view.py); no card when None
  "notes": {view: str},                                 # why a view is empty and the command that fills it
}
```
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thoughtlens.errors import ThoughtlensError
from thoughtlens.jsonsafe import finite_or_none
from thoughtlens.store.artifacts import METRICS as METRIC_DECLARATIONS
from thoughtlens.store.artifacts import not_computed_note

SCHEMA = "thoughtlens.report/1"

# The metrics the switcher offers, in order, with their labels: declared once in store/artifacts.py.
METRICS: dict[str, tuple[str, str]] = {m.key: (m.label, m.description) for m in METRIC_DECLARATIONS}

# Why each optional view can be empty, and the command that fills it (from the artifact declarations).
NOTES: dict[str, str] = {
    view: note
    for view in (
        "suppression",
        "counterfactual",
        "receiver_head_kurtosis",
        "head_attention",
        "category_table",
        "transition_matrix",
    )
    if (note := not_computed_note(view)) is not None
}
NOTES["answers"] = NOTES["alternatives"] = "not computed: run `thoughtlens anchors run` (resampling rollouts)"

_OPTIONAL_MATRICES = ("suppression", "counterfactual", "receiver_head_kurtosis", "receiver_scores", "head_attention")


def metric_entries(keys: set[str]) -> list[dict[str, str]]:
    """The switcher's metric list: known metrics in paper order, then any extra keys alphabetically."""
    known = [k for k in METRICS if k in keys]
    extra = sorted(keys - set(METRICS))
    entries = [{"key": k, "label": METRICS[k][0], "description": METRICS[k][1]} for k in known]
    entries += [{"key": k, "label": k.replace("_", " "), "description": ""} for k in extra]
    return entries


def clean_number(x: Any) -> float | None:
    """A float rounded to 4 significant digits (keeps 300x300 matrices small), or None for NaN/inf/None."""
    x = finite_or_none(x)
    return None if x is None else float(f"{x:.4g}")


def clean_matrix(m: Any, *, name: str, shape: tuple[int | None, int | None] = (None, None)) -> list | None:
    """A 2-D array-like -> nested lists of clean numbers. `shape` entries that are not None must match."""
    if m is None:
        return None
    arr = np.asarray(m, dtype=float)
    if arr.ndim != 2:
        raise ThoughtlensError(f"{name} must be 2-D, got shape {arr.shape}; pass a [rows, cols] array")
    for axis, want in enumerate(shape):
        if want is not None and arr.shape[axis] != want:
            raise ThoughtlensError(
                f"{name} has shape {arr.shape} but the trace has {want} sentences; "
                f"recompute it for this trace or drop it"
            )
    return [[clean_number(v) for v in row] for row in arr.tolist()]


def validate_page_data(data: dict) -> dict:
    """Check the parts the page relies on; raise a one-line ThoughtlensError that names the fix."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ThoughtlensError(
            f"page data must be a dict with schema={SCHEMA!r}; build it with "
            "page_data_from_published() or page_data_from_store()"
        )
    for key in ("problem", "trace", "sentences", "matrices", "metrics", "categories", "notes"):
        if key not in data:
            raise ThoughtlensError(
                f"page data lacks {key!r}; build it with page_data_from_published() or page_data_from_store()"
            )
    sentences = data["sentences"]
    if not sentences:
        raise ThoughtlensError("page data has no sentences; the trace is empty, generate or parse it first")
    for pos, s in enumerate(sentences):
        if s.get("index") != pos:
            raise ThoughtlensError(
                f"sentence at position {pos} has index {s.get('index')}; sentences must be numbered 0..S-1 in order"
            )
    n = len(sentences)
    matrices = data["matrices"]
    for name in ("suppression", "counterfactual"):
        m = matrices.get(name)
        if m is not None and (len(m) != n or any(len(row) != n for row in m)):
            raise ThoughtlensError(
                f"matrices.{name} must be [{n}, {n}] (one row/column per sentence); recompute it for this trace"
            )
    for head in matrices.get("head_attention") or []:
        m = head.get("matrix")
        if m is None or len(m) != n or any(len(row) != n for row in m):
            raise ThoughtlensError(
                f"head_attention L{head.get('layer')}H{head.get('head')} matrix must be "
                f"[{n}, {n}]; recompute it for this trace"
            )
    sae = data.get("sae_features")
    if sae is not None and len(sae.get("sentences") or []) != n:
        raise ThoughtlensError(
            f"sae_features.sentences must have one list per sentence ({n}); "
            "recompute them with `thoughtlens sae store-features SAE_DIR STORE`"
        )
    curve = data.get("transplant_curve")
    if curve is not None and not curve.get("points"):
        raise ThoughtlensError("transplant_curve has no points; recompute it with `thoughtlens branches transplant`")
    scores = matrices.get("receiver_scores")
    if scores is not None and len(scores) != n:
        raise ThoughtlensError(
            f"receiver_scores has {len(scores)} entries for {n} sentences; recompute it for this trace"
        )
    return data


def fill_notes(data: dict) -> dict:
    """Attach the 'not computed: run ...' note of every optional view whose data is missing."""
    notes = dict(data.get("notes") or {})
    # A note the producer gave (e.g. "skipped: ...") wins over the generic "not computed" one.
    for name in _OPTIONAL_MATRICES:
        if data["matrices"].get(name) is None and name in NOTES:
            notes.setdefault(name, NOTES[name])
    for name in ("category_table", "transition_matrix"):
        if data.get(name) is None:
            notes.setdefault(name, NOTES[name])
    if all(s.get("answers") is None for s in data["sentences"]):
        notes.setdefault("answers", NOTES["answers"])
    if all(s.get("alternatives") is None for s in data["sentences"]):
        notes.setdefault("alternatives", NOTES["alternatives"])
    data["notes"] = notes
    return data
