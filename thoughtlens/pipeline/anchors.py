"""The thought-anchors pipeline: problems -> base trace -> resampling -> attention analyses -> categories -> page.

This is the one place that strings the steps together; `thoughtlens anchors run` and `thoughtlens demo` only
parse options into these arguments and render the progress events. From Python:

    import thoughtlens
    result = thoughtlens.run_anchors("What is 17 + 25?", answer="42", rollouts=8, store="runs/p0.sqlite")
    print(result.metrics)                       # one row per sentence
    result.save_page("runs/p0.html")

Every analysis step after the resampling handles degenerate data (no sentence left after the filters, one
sentence, all rollouts right or all wrong, no answers, nothing labelled) with a note instead of an
exception: the note is sent to `on_progress`, kept in `AnchorsResult.notes` and stored as the run artifact
`pipeline_notes`, which the page shows in place of the view that was skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun
from thoughtlens.anchors.problems import load_problems
from thoughtlens.anchors.run_options import check_problem_source
from thoughtlens.errors import ConfigError, StoreError, ThoughtlensError, TraceError
from thoughtlens.pipeline.runtime import RuntimeOptions, build_runtime, load_for
from thoughtlens.progress import OnProgress, note
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.prompts import build_prompt

# Receiver heads compare sentences at least `proximity_ignore` apart (the paper uses 4); shorter traces get
# a smaller window, and below 3 sentences there is nothing to compare.
RECEIVER_PROXIMITY = 4
MIN_SENTENCES_FOR_ATTENTION = 3


@dataclass
class AnchorsResult:
    """What a pipeline run produced: where it is stored, and what was skipped and why."""

    store: RunStore
    run_id: str
    problem_ids: list[str]
    resumed: bool = False
    notes: dict[str, str] = field(default_factory=dict)  # view -> why it was skipped
    page_path: Path | None = None

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per (problem, sentence): the importance metrics of the run."""
        return self.store.metrics(self.run_id)

    def page(self, problem_id: str | None = None, similarity: bool = True):
        """The report page (a `Page`: `.html`, `.save(path)`, shown inline in Jupyter)."""
        from thoughtlens.report import report_store

        return report_store(self.store, self.run_id, problem_id or self.problem_ids[0], similarity=similarity)

    def save_page(self, path: str | Path, problem_id: str | None = None) -> Path:
        self.page_path = Path(self.page(problem_id).save(path))
        return self.page_path


# ---- problems --------------------------------------------------------------------------------------


def make_problems(
    tokenizer=None,
    *,
    problem: str | None = None,
    answer: str | None = None,
    problems: str | Path | None = None,
    limit: int | None = 1,
    trace: str | Path | None = None,
    problem_id: str = "problem-0",
) -> list[Problem]:
    """Problems from exactly one source: a problem text, a .jsonl/.json problems file, or a trace file
    (a published base_solution.json or a plain-text trace, analysed instead of generating one; with a
    plain-text trace, `problem` is the question its prompt is built from).

    tokenizer: the model's tokenizer (its chat template builds the prompt; None for plain text).
    """
    check_problem_source(problem, problems, trace)
    if trace is not None:
        from thoughtlens.anchors.attention.white_box import load_trace_file

        pid, parsed, meta = load_trace_file(trace)
        if not parsed.sentences:  # said now, before any model work, not after the first progress line
            raise TraceError(
                f"{trace} has no sentences to analyse (after the think tag, if any): pass a trace with reasoning text"
            )
        prompt, text = parsed.prompt, problem or meta.get("problem") or parsed.prompt
        if not prompt:
            if not text:
                raise ConfigError(f"{trace} has no prompt: pass the question with --problem TEXT")
            prompt = build_prompt(tokenizer, text)
        return [Problem(pid, text, prompt, answer or meta.get("gt_answer"), base_completion=parsed.completion)]
    if problem is not None:
        return [Problem(problem_id, problem, build_prompt(tokenizer, problem), answer)]
    return [
        Problem(p["id"], p["problem"], build_prompt(tokenizer, p["problem"]), p["gt_answer"])
        for p in load_problems(problems, limit)
    ]


# ---- the pipeline ----------------------------------------------------------------------------------


def run_anchors(
    problem: str | Problem | Sequence[Problem] | None = None,
    *,
    answer: str | None = None,
    problems: str | Path | None = None,
    limit: int | None = 1,
    trace: str | Path | None = None,
    model=None,
    sampler=None,
    store: str | Path | RunStore = "runs/anchors.sqlite",
    config: AnchorsConfig | None = None,
    attention: bool = False,
    categories: bool = True,
    report: str | Path | None = None,
    run_id: str | None = None,
    resume: bool = False,
    budget=None,
    on_progress: OnProgress | None = None,
    **config_overrides,
) -> AnchorsResult:
    """Run (or resume) the whole thought-anchors job and return where its results are.

    problem: a problem text (with `answer` its ground truth), a `Problem`, or a list of them; or use
      `problems=` (a .jsonl/.json file, first `limit`) or `trace=` (analyse an existing trace).
    model: a HookedModel, a model name/path, or None for the bundled model (loaded only when needed).
    sampler: a Sampler (default: the hf backend on `model`, sharing each prefix's KV cache).
    config / config_overrides: AnchorsConfig, e.g. `rollouts=8` (alias of n_rollouts), `max_new_tokens=128`.
    attention: also compute receiver heads and attention suppression (needs the model's weights).
    categories: tag sentences and write the category x metric tables. report: also write the page here.
    budget: an adaptive rollout budget (`thoughtlens.anchors.importance.budget.BudgetPolicy`); None = every position
      gets `n_rollouts` (the paper's procedure).
    The same call with the same settings resumes a killed run (`resume=True` insists that one exists).
    """
    if "rollouts" in config_overrides:
        config_overrides["n_rollouts"] = config_overrides.pop("rollouts")
    config = replace(config or AnchorsConfig(), **config_overrides)  # AnchorsConfig validates its own values
    if isinstance(model, (str, Path)) or (model is None and (sampler is None or attention)):
        model = load_for(RuntimeOptions(model=None if model is None else str(model)))
    tokenizer = getattr(model, "tokenizer", None) or getattr(sampler, "tokenizer", None)
    if isinstance(problem, Problem):
        todo = [problem]
    elif isinstance(problem, Sequence) and not isinstance(problem, str):
        todo = list(problem)
    else:
        todo = make_problems(tokenizer, problem=problem, answer=answer, problems=problems, limit=limit, trace=trace)
    if sampler is None:
        from thoughtlens.anchors.importance.black_box import answer_complete

        sampler = build_runtime(
            RuntimeOptions(backend=config.backend), model=model, answer_done=answer_complete
        ).sampler
    if not config.model:
        config = replace(config, model=getattr(model, "name", "") or getattr(sampler, "model_name", ""))
    db = store if isinstance(store, RunStore) else _open_store(store)
    job = AnchorsRun(sampler, db, config, run_id, on_progress=on_progress, budget=budget)
    if resume and not job.resumed:
        raise StoreError(f"resume: run '{job.run_id}' is not in {db.path}; drop --resume to start it")
    result = AnchorsResult(db, job.run_id, [p.id for p in todo], resumed=job.resumed)
    note(
        on_progress,
        f"{'resuming' if job.resumed else 'starting'} run {job.run_id} in {db.path}: {len(todo)} "
        f"problem(s), {config.n_rollouts} rollouts per prefix, backend {config.backend}, model {config.model}",
    )
    job.run(todo)
    if attention:
        _attention(model, db, job.run_id, result, on_progress)
    if categories:
        _categories(db, job.run_id, result, on_progress)
    _check_outcomes(db, job.run_id, result, on_progress)
    db.put_artifact(job.run_id, "pipeline_notes", result.notes)
    if report is not None:
        result.save_page(report)
    return result


def _open_store(path: str | Path) -> RunStore:
    return RunStore(path)  # creates the folder, or says in one line why it cannot


def _skip(result: AnchorsResult, on_progress: OnProgress | None, views: Sequence[str], why: str) -> None:
    for view in views:
        result.notes[view] = f"skipped: {why}"
    note(on_progress, f"skipped {' and '.join(dict.fromkeys(v.replace('_', ' ') for v in views))}: {why}")


def _attention(model, store: RunStore, run_id: str, result: AnchorsResult, on_progress: OnProgress | None) -> None:
    """Receiver heads and attention suppression over the run's base traces (teacher-forced, white box)."""
    views = ("receiver_head_kurtosis", "head_attention", "suppression")
    if not hasattr(model, "attention_control"):
        _skip(result, on_progress, views, "the attention analyses need the model's weights (hf backend)")
        return
    from thoughtlens.anchors.attention.white_box import analyze_attention, traces_from_store

    traces = {pid: t for pid, t in traces_from_store(store, run_id).items() if pid in result.problem_ids}
    short = {pid: len(t) for pid, t in traces.items() if len(t) < MIN_SENTENCES_FOR_ATTENTION}
    traces = {pid: t for pid, t in traces.items() if pid not in short}
    if short:
        _skip(
            result,
            on_progress,
            views,
            f"trace(s) {', '.join(f'{p} ({n} sentences)' for p, n in short.items())} "
            f"have fewer than {MIN_SENTENCES_FOR_ATTENTION} sentences",
        )
    if not traces:
        return
    # The paper's window of 4 needs > 4 sentences; a shorter trace gets the widest window it can have.
    proximity = min(RECEIVER_PROXIMITY, min(len(t) for t in traces.values()) - 2)
    if proximity < RECEIVER_PROXIMITY:
        note(
            on_progress,
            f"short trace: receiver heads use proximity_ignore={proximity} (the paper's is {RECEIVER_PROXIMITY})",
        )
    analyze_attention(model, traces, store=store, run_id=run_id, proximity_ignore=proximity, on_progress=on_progress)


def _categories(store: RunStore, run_id: str, result: AnchorsResult, on_progress: OnProgress | None) -> None:
    """Category x metric table and transition matrix (bootstrap CIs) into the store, for the page."""
    from thoughtlens.anchors.importance import by_category as cat

    views = ("category_table", "transition_matrix")
    sentences = cat.load_store(store, run_id)
    if sentences.empty or sentences["tags"].map(len).sum() == 0:
        _skip(result, on_progress, views, "no sentence carries a category label (label_categories is off)")
        return
    rules = cat.AggregationRules()
    _, counts = cat.apply_rules(sentences, rules)
    if counts.n_used == 0:
        _skip(result, on_progress, views, _why_nothing_left(counts))
        return
    try:
        results = cat.analyze(sentences, cat.DEFAULT_METRICS, rules, debias_degree=None)
    except ThoughtlensError as exc:
        _skip(result, on_progress, views, str(exc))
        return
    cat.save_results(store, run_id, results)


def _why_nothing_left(counts) -> str:
    if counts.n_after_convergence == 0:
        return (
            "the convergence filter dropped every sentence (accuracy stays above 0.99 or below 0.01 from the "
            "start: every rollout right, or every rollout wrong)"
        )
    return "no labelled sentence left after the aggregation rules"


def _check_outcomes(store: RunStore, run_id: str, result: AnchorsResult, on_progress: OnProgress | None) -> None:
    """Say plainly when the outcomes make importance uninformative (all right, all wrong, no answers)."""
    rollouts = store.rollouts(run_id)
    rollouts = rollouts[(rollouts["condition"] == "resampled") & rollouts["problem_id"].isin(result.problem_ids)]
    if rollouts.empty:
        return
    answered = rollouts["answer"].notna()
    if not answered.any():
        result.notes["answers"] = "no rollout stated an answer: raise max_new_tokens or check the answer style"
        note(on_progress, result.notes["answers"])
        return
    correct = rollouts["is_correct"].dropna()
    if len(correct) and (correct.astype(bool).all() or not correct.astype(bool).any()):
        which = "right" if correct.astype(bool).all() else "wrong"
        result.notes["accuracy"] = (
            f"every rollout is {which}: accuracy-based importance is 0 everywhere (KL "
            "metrics still show how the answer distribution moves)"
        )
        note(on_progress, result.notes["accuracy"])
