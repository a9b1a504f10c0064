"""Grade the stored rollouts of one problem with an outcome (anchors.outcomes.spec), resumably.

The grades are kept in the run store (artifact `outcome_cache`, text hash -> value / error), written every
CHECKPOINT_EVERY new grades and at the end, so a killed run that resumes does not call a judge again for
what it already graded. Grades become the Outcome records the metric definitions take (answer "yes" / "no",
None when unknown; is_correct = the value), keeping each rollout's first sentence for the similarity split.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from thoughtlens.anchors.importance.budget import PositionStats
from thoughtlens.anchors.importance.definitions import Outcome
from thoughtlens.anchors.outcomes.spec import OutcomeSpec, grade_texts
from thoughtlens.progress import OnProgress, Tracker

CHECKPOINT_EVERY = 20
CACHE_ARTIFACT = "outcome_cache"
SUMMARY_ARTIFACT = "outcome_summary"
DEFINITION_ARTIFACT = "outcome_definition"


@dataclass
class GradedRollouts:
    """resampled / forced: R_0..R_n and F_0..F_n as Outcome lists (same order as the job builds them);
    errors / unknown: per position, rollouts whose outcome raised / came back unknown; summary: counts."""

    resampled: list[list[Outcome]]
    forced: list[list[Outcome]] | None
    errors: list[int]
    unknown: list[int]
    base_value: bool | None
    summary: dict


def _as_outcome(value: bool | None, first: str | None) -> Outcome:
    # Unknown: no answer (left out of every rate, as their `contains_X is None`), is_correct False so that
    # an all-unknown set has rate 0.0 like their `... if total > 0 else 0.0`.
    if value is None:
        return Outcome(None, False, first)
    return Outcome("yes" if value else "no", value, first)


def grade_problem(
    outcome: OutcomeSpec,
    store,
    run_id: str,
    problem_id: str,
    df: pd.DataFrame,
    resampled: list[list[Outcome]],
    forced: list[list[Outcome]] | None,
    base_text: str,
    on_progress: OnProgress | None = None,
) -> GradedRollouts:
    """Replace the answers of `resampled` / `forced` (built by the job from `df`, error rows removed, in
    df order per condition) with the outcome's grades of the rollout texts."""
    # What was measured, stored with the run (a judge's prompt, model and server; a pattern; a category).
    store.put_artifact(
        run_id,
        DEFINITION_ARTIFACT,
        {"spec": outcome.spec, "kind": outcome.kind, "label": outcome.label, **outcome.definition},
    )
    cache: dict = store.get_artifact(run_id, CACHE_ARTIFACT, problem_id, default={})
    pending = [0]
    bar = Tracker(on_progress, "outcome", f"{problem_id}: grading rollouts ({outcome.label})")

    def graded(n: int) -> None:
        pending[0] += n
        bar.advance(n)
        if pending[0] >= CHECKPOINT_EVERY:
            store.put_artifact(run_id, CACHE_ARTIFACT, cache, problem_id)
            pending[0] = 0

    n_pos = len(resampled)
    errors, unknown = [0] * n_pos, [0] * n_pos
    out: dict[str, list[list[Outcome]]] = {}
    for condition, lists in (("resampled", resampled), ("forced", forced)):
        if lists is None:
            continue
        rows = df[df["condition"] == condition]
        texts = [t if isinstance(t, str) else "" for t in rows["text"]]
        bar.add_total(sum(1 for t in texts if t not in cache))
        grades = grade_texts(outcome, texts, cache, graded)
        by_k: list[list[Outcome]] = [[] for _ in range(n_pos)]
        cursor = [0] * n_pos
        for k, g in zip(rows["sentence_index"], grades):
            first = lists[k][cursor[k]].first_sentence
            cursor[k] += 1
            by_k[k].append(_as_outcome(g.value, first))
            if condition == "resampled":
                errors[k] += g.error is not None
                unknown[k] += g.value is None
        out[condition] = by_k
    (base,) = grade_texts(outcome, [base_text], cache)
    store.put_artifact(run_id, CACHE_ARTIFACT, cache, problem_id)
    n_graded = sum(len(r) for r in out["resampled"])
    summary = {
        "outcome": outcome.spec,
        "label": outcome.label,
        "kind": outcome.kind,
        "n_resampled": n_graded,
        "n_errors": sum(errors),
        "n_unknown": sum(unknown),
        "base_value": base.value,
        "base_error": base.error,
        "first_error": next((v["error"] for v in cache.values() if v.get("error")), None),
    }
    store.put_artifact(run_id, SUMMARY_ARTIFACT, summary, problem_id)
    return GradedRollouts(out["resampled"], out.get("forced"), errors, unknown, base.value, summary)


def outcome_position_stats(
    outcome: OutcomeSpec, store, run_id: str, problem_id: str, df: pd.DataFrame, n_pos: int
) -> list[PositionStats]:
    """What the adaptive budget (anchors.importance.budget) steers on for a non-default outcome, per prefix position:
    PositionStats(n rollouts, n with a known value, n True), i.e. the paper's rate #True / #known.
    df: the stored resampled rollouts (errors removed). Grades come from and go to the run's cache, so the
    metrics step (and a resumed run) does not grade a rollout twice."""
    cache: dict = store.get_artifact(run_id, CACHE_ARTIFACT, problem_id, default={})
    n_cached = len(cache)
    texts = [t if isinstance(t, str) else "" for t in df["text"]]
    grades = grade_texts(outcome, texts, cache)
    if len(cache) != n_cached:
        store.put_artifact(run_id, CACHE_ARTIFACT, cache, problem_id)
    n, known, true = [0] * n_pos, [0] * n_pos, [0] * n_pos
    for k, g in zip(df["sentence_index"], grades):
        n[k] += 1
        known[k] += g.value is not None
        true[k] += g.value is True
    return [PositionStats(a, b, c) for a, b, c in zip(n, known, true)]


def add_outcome_columns(
    rows: list[dict],
    resampled: list[list[Outcome]],
    forced: list[list[Outcome]] | None,
    sims,
    threshold: float,
    graded: GradedRollouts,
) -> None:
    """Add to each sentence's metrics the log-odds forms (anchors.importance.logodds) and the outcome's error and
    unknown counts among R_i (n_outcome_errors, n_outcome_unknown), in place."""
    from thoughtlens.anchors.importance.logodds import logodds_row

    n = len(rows)
    for i, row in enumerate(rows):
        row.update(logodds_row(i, n, resampled, forced, sims[i], threshold))
        row["n_outcome_errors"] = float(graded.errors[i])
        row["n_outcome_unknown"] = float(graded.unknown[i])
