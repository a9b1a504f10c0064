"""Page data for one problem of a run in a RunStore: the base trace and its sentences, metrics (with
CIs), rollouts (answer distributions, resampled alternatives) and the white-box artifacts.

Store conventions read here:
- metrics: the paper's names (`resampling_importance_accuracy`, ...); a CI is stored as two more
  metrics `<name>_ci_low` and `<name>_ci_high`.
- rollouts: condition "resampled" (prefix before S_i) and "kept" (prefix through S_i); without "kept"
  rollouts, S_i kept = S_{i+1} resampled, as in the paper. Rollouts with finish_reason "error" are skipped.
- artifacts (per problem, else run-level): suppression_matrix [S,S], counterfactual_matrix [S,S]
  (row = cause, column = affected; written by `anchors run`, anchors/importance/step_attribution.py),
  receiver_head_kurtosis [layers, heads], receiver_scores [S], sentence_attention_top_heads [{layer, head,
  matrix [S,S]}], category_table [{category, metric, mean, ci_low, ci_high, n}], transition_matrix {categories,
  matrix[, counts]}, sae_sentence_features + sae_feature_table (the SAE feature panel, report/sae_panel.py),
  transplant_curve (+ hinted_cot, which is the page's trace when the problem has no base trace;
  report/transplant_view.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from thoughtlens.anchors.importance.definitions import conventions_note
from thoughtlens.errors import StoreError, ThoughtlensError
from thoughtlens.report.alternatives import (
    MAX_ALTERNATIVES,
    SIMILARITY_THRESHOLD,
    Embedder,
    alternatives_for_trace,
    minilm_embedder,
)
from thoughtlens.report.category_stats import categories_in, category_table, transition_matrix
from thoughtlens.report.page_data import (
    SCHEMA,
    clean_matrix,
    clean_number,
    fill_notes,
    metric_entries,
    validate_page_data,
)
from thoughtlens.report.sae_panel import sae_panel_data
from thoughtlens.report.transplant_view import hinted_cot_trace, transplant_curve_data
from thoughtlens.store.run_store import RunStore, pick_one, pick_run_id
from thoughtlens.trace.answers import normalize_answer
from thoughtlens.trace.split import first_sentence

_CI_SUFFIXES = ("_ci_low", "_ci_high")
# The runs a page is drawn from, by preference: an anchors run, else a transplant run (its hinted CoT).
REPORT_KINDS = ("anchors", "transplant", "white_box")
_NO_ANSWER = "(no answer)"


def _open(store: RunStore | str | Path) -> RunStore:
    if isinstance(store, RunStore):
        return store
    path = Path(store)
    if not path.is_file():  # RunStore would create an empty store here; a report needs an existing one
        raise StoreError(f"no run store at {path}: pass the .sqlite file written by `thoughtlens anchors run`")
    return RunStore(path)


def _artifact(store: RunStore, run_id: str, name: str, problem_id: str):
    """A problem's artifact, else the run-level one, else None."""
    value = store.get_artifact(run_id, name, problem_id, default=None)
    return store.get_artifact(run_id, name, None, default=None) if value is None else value


def _metrics_by_sentence(df: pd.DataFrame, n: int) -> tuple[list[dict], list[dict]]:
    """[S] metric dicts and [S] CI dicts from a store.metrics() frame of one problem."""
    names = [c for c in df.columns if c not in ("problem_id", "sentence_index")]
    base = [c for c in names if not c.endswith(_CI_SUFFIXES)]
    metrics: list[dict] = [{} for _ in range(n)]
    cis: list[dict] = [{} for _ in range(n)]
    for row in df.to_dict("records"):
        i = int(row["sentence_index"])
        if not 0 <= i < n:
            continue  # metrics of a sentence the stored trace no longer has
        metrics[i] = {k: clean_number(row[k]) for k in base}
        for k in base:
            low, high = row.get(k + "_ci_low"), row.get(k + "_ci_high")
            if clean_number(low) is not None and clean_number(high) is not None:
                cis[i][k] = [clean_number(low), clean_number(high)]
    return metrics, cis


def _distribution(answers: pd.Series) -> dict[str, float]:
    """Share of each normalised answer, most common first. answers: [n] str or NA."""
    keys = [normalize_answer(a) if isinstance(a, str) and a.strip() else _NO_ANSWER for a in answers]
    counts = Counter(keys)
    return {k: clean_number(v / len(keys)) for k, v in counts.most_common()}


def _answer_views(rollouts: pd.DataFrame, n: int) -> list[dict | None]:
    """Per sentence: answer distributions with S_i kept vs resampled, or None without rollouts."""
    ok = rollouts[rollouts["finish_reason"] != "error"] if len(rollouts) else rollouts
    by_condition = {c: dict(tuple(g.groupby("sentence_index"))) for c, g in ok.groupby("condition")} if len(ok) else {}
    resampled, kept = by_condition.get("resampled", {}), by_condition.get("kept", {})
    out: list[dict | None] = []
    for i in range(n):
        res = resampled.get(i)
        kept_rows = kept.get(i) if kept else resampled.get(i + 1)
        if res is None or kept_rows is None:
            out.append(None)
            continue
        note = (
            "kept = rollouts from the prefix through this sentence"
            if kept
            else "kept = rollouts resampled from the next sentence (this sentence kept), as in the paper"
        )
        out.append(
            {
                "kept": _distribution(kept_rows["answer"]),
                "resampled": _distribution(res["answer"]),
                "n_kept": len(kept_rows),
                "n_resampled": len(res),
                "note": note,
            }
        )
    return out


def _resampled_sentences(rollouts: pd.DataFrame, n: int) -> list[list[str] | None]:
    """Per sentence: the first sentence of each "resampled" rollout (the replacement of S_i)."""
    if not len(rollouts):
        return [None] * n
    res = rollouts[(rollouts["condition"] == "resampled") & (rollouts["finish_reason"] != "error")]
    groups = {int(i): g["text"].tolist() for i, g in res.groupby("sentence_index")}
    return [[first_sentence(t) for t in groups[i]] if i in groups else None for i in range(n)]


def _head_attention(value, n: int) -> list[dict] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(h, dict) and {"layer", "head", "matrix"} <= h.keys() for h in value
    ):
        raise ThoughtlensError(
            "artifact sentence_attention_top_heads must be a list of {layer, head, matrix}; "
            "recompute it with `thoughtlens anchors attention`"
        )
    return [
        {
            "layer": int(h["layer"]),
            "head": int(h["head"]),
            "matrix": clean_matrix(h["matrix"], name=f"attention of L{h['layer']}H{h['head']}", shape=(n, n)),
        }
        for h in value
    ]


def _category_table(value) -> list[dict] | None:
    if value is None:
        return None
    need = {"category", "metric", "mean"}
    if not isinstance(value, list) or not all(isinstance(r, dict) and need <= r.keys() for r in value):
        raise ThoughtlensError(
            "artifact category_table must be records with category, metric, mean "
            "(ci_low, ci_high, n optional); recompute it with `thoughtlens anchors categories`"
        )
    return [
        {
            "category": r["category"],
            "metric": r["metric"],
            "mean": clean_number(r["mean"]),
            "ci_low": clean_number(r.get("ci_low")),
            "ci_high": clean_number(r.get("ci_high")),
            "n": r.get("n"),
        }
        for r in value
    ]


def _transition(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not {"categories", "matrix"} <= value.keys():
        raise ThoughtlensError(
            "artifact transition_matrix must be {categories, matrix}; "
            "recompute it with `thoughtlens anchors categories`"
        )
    c = len(value["categories"])
    out = {
        "categories": list(value["categories"]),
        "matrix": clean_matrix(value["matrix"], name="transition_matrix", shape=(c, c)),
    }
    if value.get("counts") is not None:
        out["counts"] = np.asarray(value["counts"]).astype(int).tolist()
    return out


def page_data_from_store(
    store: RunStore | str | Path,
    run_id: str | None = None,
    problem_id: str | None = None,
    *,
    similarity: bool = True,
    embed: Embedder | None = None,
    max_alternatives: int = MAX_ALTERNATIVES,
) -> dict:
    """Page data for one problem of one run. run_id left out: the latest anchors run (else the latest
    transplant run); problem_id may be left out when the run has one."""
    store = _open(store)
    run_id, _ = pick_run_id(store, run_id, REPORT_KINDS)
    problems = store.problems(run_id)
    try:
        problem_id = pick_one(
            "problem", problem_id, problems["problem_id"].tolist(), "problem_id", f"run '{run_id}' of {store.path}"
        )
    except StoreError as exc:
        raise StoreError(f"{exc} (--problem ... on the command line)") from None
    trace = store.trace(run_id, problem_id)
    hinted_cot = store.get_artifact(run_id, "hinted_cot", problem_id, default=None)
    cot_on_page = (trace is None or not trace["sentences"]) and isinstance(hinted_cot, str) and bool(hinted_cot.strip())
    if cot_on_page:  # a transplant run: no base trace, the page shows the hinted CoT it cut
        trace = hinted_cot_trace(hinted_cot)
    if trace is None or not trace["sentences"]:
        raise StoreError(
            f"problem '{problem_id}' of run '{run_id}' has no base trace with sentences; "
            "run `thoughtlens anchors run` to generate it"
        )
    problem = problems[problems["problem_id"] == problem_id].iloc[0]
    sentences = _sentences(trace)
    n = len(sentences)
    metrics, cis = _metrics_by_sentence(store.metrics(run_id, problem_id), n)
    receiver_scores = _artifact(store, run_id, "receiver_scores", problem_id)
    if receiver_scores is not None:
        receiver_scores = np.asarray(receiver_scores, dtype=float).ravel()
        if len(receiver_scores) != n:
            raise ThoughtlensError(
                f"artifact receiver_scores has {len(receiver_scores)} entries for {n} "
                "sentences; recompute it with `thoughtlens anchors attention`"
            )
        for i, v in enumerate(receiver_scores):
            metrics[i]["receiver_score"] = clean_number(v)
    rollouts = store.rollouts(run_id, problem_id)
    answers = _answer_views(rollouts, n)
    resamples = _resampled_sentences(rollouts, n)
    if similarity and embed is None and any(r for r in resamples):
        embed = minilm_embedder()
    alternatives = alternatives_for_trace(
        [s["text"] for s in sentences], resamples, embed=embed if similarity else None, max_items=max_alternatives
    )
    for i, s in enumerate(sentences):
        s.update(metrics=metrics[i], ci=cis[i], answers=answers[i], alternatives=alternatives[i])
    metric_keys = sorted({k for m in metrics for k, v in m.items() if v is not None})
    categories = categories_in(sentences)
    stored_table = _category_table(_artifact(store, run_id, "category_table", problem_id))
    table = stored_table or (category_table(sentences, metric_keys) if categories else None) or None
    transition = _transition(_artifact(store, run_id, "transition_matrix", problem_id))
    if transition is None and categories:
        transition = transition_matrix(sentences, categories)
    sae_features, sae_note = sae_panel_data(
        store.get_artifact(run_id, "sae_sentence_features", problem_id, default=None),
        store.get_artifact(run_id, "sae_feature_table", None, default=None),
        n,
        problem_id,
    )
    data = {
        "schema": SCHEMA,
        "title": f"{problem_id} (run {run_id})",
        "source": f"{store.path} run {run_id}",
        "problem": {
            "id": problem_id,
            "text": problem["problem"],
            "gt_answer": None if pd.isna(problem["gt_answer"]) else problem["gt_answer"],
        },
        "trace": {"text": trace["completion"], "answer": trace["answer"], "is_correct": trace["is_correct"]},
        "categories": categories or (transition or {}).get("categories", []),
        "metrics": metric_entries(set(metric_keys)),
        "sentences": sentences,
        "similarity_threshold": SIMILARITY_THRESHOLD if similarity else None,
        "matrices": {
            "suppression": clean_matrix(
                _artifact(store, run_id, "suppression_matrix", problem_id), name="suppression_matrix", shape=(n, n)
            ),
            "counterfactual": clean_matrix(
                _artifact(store, run_id, "counterfactual_matrix", problem_id),
                name="counterfactual_matrix",
                shape=(n, n),
            ),
            "receiver_head_kurtosis": clean_matrix(
                _artifact(store, run_id, "receiver_head_kurtosis", problem_id), name="receiver_head_kurtosis"
            ),
            "receiver_scores": None if receiver_scores is None else [clean_number(v) for v in receiver_scores],
            "head_attention": _head_attention(_artifact(store, run_id, "sentence_attention_top_heads", problem_id), n),
        },
        "category_table": table,
        "category_table_source": (
            "run artifact category_table"
            if stored_table
            else "computed from this trace: mean per primary category, 95 % percentile-bootstrap CI over sentences"
        ),
        "transition_matrix": transition,
        "sae_features": sae_features,
        "transplant_curve": transplant_curve_data(
            store.get_artifact(run_id, "transplant_curve", problem_id, default=None), cot_on_page=cot_on_page
        ),
        # Steps the pipeline skipped, and why (e.g. every sentence dropped by the convergence filter).
        "notes": {
            **dict(_artifact(store, run_id, "pipeline_notes", problem_id) or {}),
            **({"sae_features": sae_note} if sae_note else {}),
            # A transplant run has no importance metrics, so the metric conventions say nothing there.
            **(
                {"trace": "the trace is the hinted chain of thought the transplant cut (artifact hinted_cot)"}
                if cot_on_page
                else {"conventions": conventions_note(_run_config(store, run_id))}
            ),
        },
    }
    # A run that measured another outcome (anchors.outcomes.spec) names its rate after it, not "accuracy".
    from thoughtlens.anchors.outcomes.spec import outcome_label
    from thoughtlens.report.outcome_labels import relabel_outcome

    return validate_page_data(relabel_outcome(fill_notes(data), outcome_label(_run_config(store, run_id))))


def _run_config(store: RunStore, run_id: str) -> dict:
    return next((r["config"] for r in store.runs() if r["run_id"] == run_id), {}) or {}


def _sentences(trace: dict) -> list[dict]:
    """Stored sentences (offsets into prompt + completion) -> page sentences (offsets into completion)."""
    shift = len(trace["prompt"])
    out = []
    for pos, s in enumerate(trace["sentences"]):
        if s["index"] != pos:
            raise StoreError(
                f"stored sentence indices must be 0..S-1 in order, found {s['index']} at {pos}; "
                "re-run `thoughtlens anchors run` to rewrite the trace"
            )
        start, end = max(0, s["start"] - shift), max(0, s["end"] - shift)
        out.append(
            {
                "index": pos,
                "start": start,
                "end": end,
                "text": s["text"],
                "tags": list(s["tags"] or []),
                "summary": None,
                "depends_on": [],
            }
        )
    return out
