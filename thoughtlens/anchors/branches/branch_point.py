"""The point a Thought Branches experiment branches from: one sentence of a stored `anchors run` trace, and
the outcome its continuations are graded by.

Resilience (anchors/branches/resilience.py) and on-/off-policy interventions (anchors/branches/policy_edits.py) both
start from a problem's stored base trace, re-split it the way the run split it, pick sentence i, and grade
continuations by the run's outcome (correctness against the stored ground truth by default). This file is
that shared first step, so both read a stored run identically.
"""

from __future__ import annotations

from dataclasses import dataclass

from thoughtlens.anchors.outcomes.spec import DEFAULT_OUTCOME, OutcomeSpec, resolve_outcome
from thoughtlens.errors import ConfigError, StoreError
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.reasoning_trace import ReasoningTrace


def correctness_outcome(gt_answer: str | None, close_tag: str = "</think>") -> OutcomeSpec:
    """The maths outcome as a text outcome: the stated answer (after the think block when there is one)
    equals the ground truth; unknown when no answer is stated or there is no ground truth."""
    from thoughtlens.trace.answers import answers_equivalent, extract_answer

    def correct(text: str) -> bool | None:
        tail = text.split(close_tag, 1)[1] if close_tag in text else text
        answer = extract_answer(tail) or extract_answer(text)
        if answer is None or gt_answer is None:
            return None
        return answers_equivalent(answer, gt_answer)

    return OutcomeSpec(DEFAULT_OUTCOME, "correct", "accuracy", correct, {"gt_answer": gt_answer})


@dataclass
class BranchPoint:
    """trace: the stored base trace, split as the run split it; index / original: the chosen sentence;
    think_tags: the run's; outcome: what continuations are graded by."""

    trace: ReasoningTrace
    index: int
    original: str
    think_tags: tuple[str, str]
    outcome: OutcomeSpec


def branch_point(
    store: RunStore,
    anchors_run: str,
    problem_id: str,
    sentence_index: int,
    outcome_spec: str,
    outcome: OutcomeSpec | None = None,
) -> BranchPoint:
    """Sentence `sentence_index` of problem `problem_id` in run `anchors_run`, and the outcome to grade by:
    `outcome` if given (its spec must equal `outcome_spec`), else `outcome_spec` resolved (the default spec:
    correctness against the run's stored ground truth). One-line errors for a missing run, trace or sentence."""
    runs = {r["run_id"]: r["config"] for r in store.runs()}
    if anchors_run not in runs:
        raise StoreError(f"no run {anchors_run!r} in {store.path}: pass the run id of `thoughtlens anchors run`")
    acfg = runs[anchors_run] or {}
    stored = store.trace(anchors_run, problem_id)
    if stored is None:
        raise StoreError(f"run {anchors_run!r} has no trace for problem {problem_id!r}: run `anchors run` first")
    tags = tuple(acfg.get("think_tags") or ("<think>", "</think>"))
    trace = ReasoningTrace.parse(
        stored["prompt"], stored["completion"], think_tags=tags, split_style=acfg.get("split_style", "thoughtlens")
    )
    n = len(trace.sentences)
    if not isinstance(sentence_index, int) or isinstance(sentence_index, bool) or not 0 <= sentence_index < n:
        raise ConfigError(f"sentence {sentence_index!r} is out of range: the trace has sentences 0..{n - 1}")
    if outcome is None:
        if outcome_spec == DEFAULT_OUTCOME:
            gt = store.problems(anchors_run)
            gt = gt[gt["problem_id"] == problem_id]["gt_answer"]
            outcome = correctness_outcome(gt.iloc[0] if len(gt) and isinstance(gt.iloc[0], str) else None, tags[1])
        else:
            outcome = resolve_outcome(outcome_spec)
    elif outcome.spec != outcome_spec:
        raise ConfigError(f"outcome {outcome.spec!r} differs from config.outcome {outcome_spec!r}: make them equal")
    return BranchPoint(trace, sentence_index, trace.sentences[sentence_index].text, tags, outcome)
