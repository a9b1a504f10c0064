"""`thoughtlens branches ...`: Thought Branches analyses on a run store (library: anchors.outcomes.spec,
anchors.branches.resilience, anchors.branches.policy_edits, anchors.branches.transplant)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from thoughtlens.cli import _common as c

app = typer.Typer(
    help="Thought Branches: outcomes other than correctness, resilience and counterfactual++, "
    "on-policy vs off-policy interventions, hint transplant.",
    no_args_is_help=True,
)


@app.command("outcome")
@c.command
def outcome(
    store: str = typer.Argument(..., help="Run store (.sqlite) written by `thoughtlens anchors run`."),
    run_id: str = typer.Option(None, "--run", help="Run id (default: the latest anchors run)."),
) -> None:
    """What a run measured importance for, and how grading went (errors and unknown values per problem)."""
    from thoughtlens.anchors.importance.outcome_grading import DEFINITION_ARTIFACT, SUMMARY_ARTIFACT
    from thoughtlens.anchors.outcomes.spec import outcome_label
    from thoughtlens.store.run_store import RunStore

    with RunStore(c.existing_store(store)) as s:
        rid = c.pick_run(s, run_id)
        config = s.run(rid)["config"] or {}
        out = c.stdout()
        spec = config.get("outcome") or "correct"
        out.print(f"run {rid}: outcome [bold]{spec}[/bold] ({outcome_label(config)})", highlight=False)
        definition = s.get_artifact(rid, DEFINITION_ARTIFACT, default=None)
        for key in ("question", "template", "pattern", "category", "labeler", "callable", "model", "base_url"):
            if definition and definition.get(key):
                out.print(f"  {key}: {definition[key]}", highlight=False, markup=False)
        table = Table("problem", "graded", "errors", "unknown", "first error")
        for pid in s.problems(rid)["problem_id"]:
            summary = s.get_artifact(rid, SUMMARY_ARTIFACT, pid, default=None)
            if summary is None:
                table.add_row(
                    pid, "-", "-", "-", "maths correctness (no grading step)" if spec == "correct" else "not graded yet"
                )
                continue
            table.add_row(
                pid,
                str(summary["n_resampled"]),
                str(summary["n_errors"]),
                str(summary["n_unknown"]),
                summary.get("first_error") or "",
            )
        out.print(table)


@app.command("resilience")
@c.command
@c.with_engine
def resilience(
    store: str = typer.Argument(..., help="Run store (.sqlite) of a finished `thoughtlens anchors run`."),
    sentence: int = typer.Option(..., "--sentence", help="Index of the sentence to test (0-based)."),
    run_id: str = typer.Option(None, "--run", help="Anchors run id (default: the latest anchors run)."),
    problem_id: str = typer.Option(None, "--problem-id", help="Problem id (needed when the run holds several)."),
    trials: int = typer.Option(30, "--trials", help="Independent trials (the paper: 30)."),
    max_iterations: int = typer.Option(20, "--max-iterations", help="Resamplings per trial (the paper: 20)."),
    threshold: float = typer.Option(
        0.6, "--threshold", help="Cosine similarity for 'the content came back' (paper: 0.6)."
    ),
    outcome: str = typer.Option(None, "--outcome", help="Outcome spec for CF++ (default: the run's own)."),
    max_new_tokens: int = typer.Option(4096, "--max-new-tokens", help="Tokens per continuation."),
    temperature: float = typer.Option(0.6, "--temperature"),
    seed: int = typer.Option(0, "--seed"),
    engine=None,  # RuntimeOptions from the engine options (c.with_engine)
) -> None:
    """Resample one sentence until its content stops coming back; report resilience and counterfactual++."""
    from thoughtlens.anchors.branches.resilience import ResilienceConfig, measure_resilience, resilience_run_id
    from thoughtlens.pipeline.runtime import build_runtime
    from thoughtlens.store.run_store import RunStore

    with RunStore(c.existing_store(store)) as s:
        rid = c.pick_run(s, run_id)
        config = s.run(rid)["config"] or {}
        cfg = ResilienceConfig(
            n_trials=trials,
            max_iterations=max_iterations,
            similarity_threshold=threshold,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            seed=seed,
            outcome=outcome or config.get("outcome") or "correct",
        )
        from thoughtlens.store.run_store import pick_one

        pid = pick_one("problem", problem_id, list(s.problems(rid)["problem_id"]), "problem_id", str(s.path))
        sampler = build_runtime(engine).sampler
        with c.RichProgress(c.console()) as bars:
            res = measure_resilience(sampler, s, rid, pid, sentence, cfg, on_progress=bars)
    out = c.stdout()
    out.print(f"sentence {sentence}: {res.sentence}", highlight=False, markup=False)
    out.print(
        f"resilience (mean times the content came back, of {max_iterations}): {res.resilience:.2f}; "
        f"persisted in {res.persistence_rate:.0%} of {len(res.iterations)} trials; "
        f"{res.n_samples} continuations",
        highlight=False,
    )
    na = "n/a (no answer)"
    out.print(
        f"counterfactual++ = rate kept {c.fmt(res.kept_rate, missing=na)} - rate gone "
        f"{c.fmt(res.final_rate, missing=na)} = {c.fmt(res.counterfactual_plusplus, missing='n/a')}"
        + (f" ({res.n_outcome_errors} outcome errors)" if res.n_outcome_errors else ""),
        highlight=False,
    )
    out.print(f"a rollout with no answer is {res.no_answer} (as in run {rid})", highlight=False, markup=False)
    c.console().print(f"results: run {resilience_run_id(rid, pid, cfg)} of {s.path}", highlight=False, markup=False)


@app.command("intervene")
@c.command
@c.with_engine
def intervene(
    store: str = typer.Argument(..., help="Run store (.sqlite) holding the trace of a `thoughtlens anchors run`."),
    sentence: int = typer.Option(..., "--sentence", help="Insert the target after this sentence (0-based)."),
    target: str = typer.Option(
        ...,
        "--target",
        help="Target sentence, or a named one: question, doubt, "
        "alternative, pause, ethical, consequence, self_preservation.",
    ),
    run_id: str = typer.Option(None, "--run", help="Anchors run id (default: the latest anchors run)."),
    problem_id: str = typer.Option(None, "--problem-id", help="Problem id (needed when the run holds several)."),
    rollouts: int = typer.Option(100, "--rollouts", help="Full rollouts per condition (the paper: 100)."),
    iterations: int = typer.Option(6, "--iterations", help="On-policy search rounds (the paper: 6)."),
    candidates: int = typer.Option(12, "--candidates", help="Resampled sentences per round (the paper: 12)."),
    continuations: int = typer.Option(8, "--continuations", help="Next sentences per candidate (the paper: 8)."),
    threshold: float = typer.Option(
        0.7, "--threshold", help="Cosine to the target that ends the search (paper: 0.7; 0.6 for R1)."
    ),
    w_logprob: float = typer.Option(
        0.0, "--w-logprob", help="Weight of the mean log-prob in the score (hf backend; paper: 0)."
    ),
    grade: str = typer.Option(
        "full", "--grade", help="Grade prefix + generated text (full, theirs) or only the generated text (generated)."
    ),
    outcome: str = typer.Option(None, "--outcome", help="Outcome spec (default: the run's own)."),
    max_new_tokens: int = typer.Option(4096, "--max-new-tokens", help="Tokens per full rollout."),
    temperature: float = typer.Option(0.7, "--temperature"),
    seed: int = typer.Option(0, "--seed"),
    engine=None,  # RuntimeOptions from the engine options (c.with_engine)
) -> None:
    """Steer towards a target sentence on-policy (resampling) and off-policy (inserting it): effects with 95 % CIs."""
    from thoughtlens.anchors.branches.policy_edits import (
        InterventionConfig,
        hf_mean_logprob,
        intervention_run_id,
        measure_interventions,
        resolve_target,
    )
    from thoughtlens.pipeline.runtime import build_runtime
    from thoughtlens.store.run_store import RunStore, pick_one

    target = resolve_target(target)  # before any model load
    with RunStore(c.existing_store(store)) as s:
        rid = c.pick_run(s, run_id)
        config = s.run(rid)["config"] or {}
        cfg = InterventionConfig(
            n_rollouts=rollouts,
            num_iterations=iterations,
            num_chunk_resamples=candidates,
            num_continuation_samples=continuations,
            similarity_threshold=threshold,
            w_logprob=w_logprob,
            grade=grade,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            seed=seed,
            outcome=outcome or config.get("outcome") or "correct",
        )
        pid = pick_one("problem", problem_id, list(s.problems(rid)["problem_id"]), "problem_id", str(s.path))
        rt = build_runtime(engine)
        sampler = rt.sampler
        logprob = hf_mean_logprob(rt.model) if engine.backend == "hf" and w_logprob > 0 else None
        with c.RichProgress(c.console()) as bars:
            res = measure_interventions(sampler, s, rid, pid, sentence, target, cfg, logprob=logprob, on_progress=bars)
    out = c.stdout()
    out.print(f"sentence {sentence}: {res.sentence}", highlight=False, markup=False)
    out.print(f"target: {res.target}   outcome: {res.outcome}", highlight=False, markup=False)
    sr = res.search
    if sr.success:
        out.print(
            f"on-policy search: kept {sr.candidate.strip()!r} -> {sr.next_sentence.strip()!r} "
            f"(cosine {sr.best_cosine:.3f}) after {sr.iterations_used} rounds: {sr.candidates_per_kept} "
            f"candidates sampled for the one kept, {sr.n_passing} of {sr.n_continuations} next sentences "
            "passed the threshold",
            highlight=False,
            markup=False,
        )
    else:
        best = "-" if sr.best_cosine is None else f"{sr.best_cosine:.3f}"
        out.print(
            f"on-policy search failed: no next sentence reached cosine {threshold} in {sr.iterations_used} "
            f"rounds ({sr.n_candidates} candidates, best cosine {best}); no on-policy rollouts",
            highlight=False,
            markup=False,
        )
    table = Table("condition", "rate", "known / rollouts", "effect vs kept", "95 % CI", "outcome errors")
    for name, cond in res.conditions.items():
        ci = "n/a" if cond.ci_low is None else f"[{cond.ci_low:+.3f}, {cond.ci_high:+.3f}]"
        effect = "n/a" if cond.effect is None else f"{cond.effect:+.3f}"
        table.add_row(
            name,
            c.fmt(cond.rate, missing="n/a (no answer)" if cond.values else "n/a"),
            f"{cond.n_known} / {len(cond.values)}",
            effect,
            ci,
            str(cond.n_outcome_errors),
        )
    out.print(table)
    where = intervention_run_id(rid, pid, sentence, target, cfg)
    c.console().print(f"results: run {where} of {store}", highlight=False, markup=False)


@app.command("transplant")
@c.command
@c.with_engine
def transplant(
    store: str = typer.Option("transplant.sqlite", "--store", help="Run store to write (resumes the same run)."),
    problems: str = typer.Option(
        None, "--problems", help="Hinted problem set (JSON); default: the one shipped with thoughtlens."
    ),
    limit: int = typer.Option(None, "--limit", help="Only the first N problems."),
    rollouts: int = typer.Option(50, "--rollouts", help="Rollouts per cut point (the paper: 50)."),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", help="Tokens per rollout."),
    cot_max_new_tokens: int = typer.Option(1024, "--cot-max-new-tokens", help="Tokens for the hinted CoT."),
    convergence: float = typer.Option(
        0.99, "--convergence", help="Stop sampling once this share says the hinted answer (<=0: never)."
    ),
    seed: int = typer.Option(0, "--seed"),
    engine=None,  # RuntimeOptions from the engine options (c.with_engine)
) -> None:
    """Hinted CoT cut after sentence k, placed after the unhinted prompt: hinted-answer rate vs k, with 95 % CIs."""
    from thoughtlens.anchors.branches.transplant import TransplantConfig, load_hinted_problems, run_transplant
    from thoughtlens.pipeline.runtime import build_runtime
    from thoughtlens.store.run_store import RunStore
    from thoughtlens.trace.prompts import build_prompt

    cfg = TransplantConfig(
        n_rollouts=rollouts,
        max_new_tokens=max_new_tokens,
        cot_max_new_tokens=cot_max_new_tokens,
        seed=seed,
        convergence=convergence if convergence > 0 else None,
    )
    chosen = load_hinted_problems(problems)[: limit or None]
    rt = build_runtime(engine)
    sampler = rt.sampler
    # a served model formats its own prompts: the chat template is applied here only for a model loaded here
    tokenizer, name = (
        (rt.tokenizer, rt.name or engine.model or "")
        if engine.backend == "hf"
        else (None, ",".join(engine.base_url or []))
    )
    fmt_prompt = lambda text: build_prompt(tokenizer, text, "{problem}") + cfg.think_tags[0] + "\n"  # noqa: E731
    err = c.console()
    with RunStore(store) as s, c.RichProgress(err) as bars:
        curves = run_transplant(sampler, s, chosen, cfg, format_prompt=fmt_prompt, model=str(name), on_progress=bars)
        store_path = s.path
    out = c.stdout()
    for pid, curve in curves.items():
        table = Table("k", "hinted-answer rate", "95 % CI", "cue / correct / other / invalid", title=pid)
        for row in curve:
            ci = "-" if row["ci_low"] is None else f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
            table.add_row(
                str(row["k"]),
                c.fmt(row["rate"]) + (" (copied)" if row["copied"] else ""),
                ci,
                f"{row['n_cue']} / {row['n_correct']} / {row['n_other']} / {row['n_invalid']}",
            )
        out.print(table)
    run = cfg.run_id([p.id for p in chosen], str(name))
    err.print(
        f"results: run {run} of {Path(store_path).resolve()}; page: thoughtlens report {store_path} --run {run}",
        highlight=False,
        markup=False,
    )
