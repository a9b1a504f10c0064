"""`thoughtlens anchors run|show|attention|categories`: parse options, call the library, render with rich.

The pipeline itself is `thoughtlens.pipeline.anchors.run_anchors`; nothing here decides what is computed.
"""

from __future__ import annotations

from pathlib import Path

import typer

from thoughtlens.cli import _common as c
from thoughtlens.errors import ConfigError
from thoughtlens.store.artifacts import SHOW_COLUMNS

app = typer.Typer(help="Thought anchors: which chain-of-thought sentences matter.", no_args_is_help=True)

# ---- run ------------------------------------------------------------------------------------------


@app.command("run")
@c.command
@c.with_engine
def run(
    problem: str = typer.Option(None, "--problem", help="One problem text."),
    gt_answer: str = typer.Option(None, "--answer", help="Ground-truth answer of --problem."),
    problems: str = typer.Option(
        None, "--problems", help="A .jsonl/.json file of problems (GSM8K `question`/`answer` or `problem`/`gt_answer`)."
    ),
    limit: int = typer.Option(1, help="Use the first N problems of --problems."),
    trace: str = typer.Option(
        None,
        "--trace",
        help="Analyse this trace instead of generating one: base_solution.json (prompt, solution) or a text file.",
    ),
    rollouts: int = typer.Option(10, "--rollouts", "-n", help="Rollouts per prefix."),
    max_new_tokens: int = typer.Option(
        4096, help="Token budget per rollout (reasoning models need thousands to close their thinking)."
    ),
    temperature: float = typer.Option(0.6, help="Sampling temperature of the rollouts."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling threshold of the rollouts."),
    seed: int = typer.Option(0),
    forced: bool = typer.Option(True, "--forced/--no-forced", help="Also measure forced-answer importance."),
    threshold: float = typer.Option(
        0.8, help="Cosine similarity below which a resampled sentence counts as different."
    ),
    store: str = typer.Option(
        "runs/anchors.sqlite", "--store", help="Run store (SQLite) to write. Created if missing."
    ),
    run_id: str = typer.Option(
        None, "--run", "--run-id", help="Run id (default: derived from the settings, so the same command resumes)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Require an existing run to resume (error if there is none)."),
    attention: bool = typer.Option(
        False,
        "--attention/--no-attention",
        help="Also compute receiver heads and attention suppression (white box, hf only).",
    ),
    report: str = typer.Option(None, "--report", help="Also write the report page here."),
    answer_style: str = typer.Option(
        "auto",
        help="How to read answers: auto (\\boxed{}, ####, 'the answer is'), boxed, gsm8k, answer_is, last_number.",
    ),
    conventions: str = typer.Option(
        "paper",
        help="Metric definitions: paper (the paper's code, exactly) or thoughtlens (pre-1.0); see docs/validation.md.",
    ),
    kl_alpha: float = typer.Option(
        None, "--kl-alpha", help="KL smoothing (default: the conventions' value, 1e-9 for paper, 0.5 for thoughtlens)."
    ),
    split_style: str = typer.Option(
        "thoughtlens", help="Sentence splitter: thoughtlens, or paper (the published chunking)."
    ),
    counterfactual_matrix: bool = typer.Option(
        True,
        "--counterfactual-matrix/--no-counterfactual-matrix",
        help="Also compute the sentence-to-sentence graph (step_attribution).",
    ),
    outcome: str = typer.Option(
        "correct",
        "--outcome",
        help=(
            "What importance measures: correct (maths answer), regex:PATTERN, category:NAME, python:MODULE:FUNCTION "
            "(docs/thought_branches.md)."
        ),
    ),
    budget: str = typer.Option(
        None,
        "--budget",
        help="Adaptive rollout budget: fixed, sequential or hybrid (default: none, every position gets --rollouts).",
    ),
    budget_initial: int = typer.Option(10, help="--budget: rollouts per position in the first round."),
    budget_step: int = typer.Option(10, help="--budget: extra rollouts per position and round."),
    budget_ci: float = typer.Option(
        0.05, help="--budget: stop a position once its importance CI half-width is below this."
    ),
    budget_total: float = typer.Option(
        None,
        help=(
            "--budget: cap a problem's rollouts at this share of positions x --rollouts (e.g. 0.25); "
            "the widest CIs are served first."
        ),
    ),
    engine=None,  # RuntimeOptions from the engine options (c.with_engine)
) -> None:
    """Resample from every prefix of a reasoning trace and measure which sentences matter."""
    from thoughtlens.anchors.run_options import check_run_options

    # Every option is checked here, before a model is loaded: a typo costs a second, not a model load.
    config = check_run_options(
        problem=problem,
        problems=problems,
        trace=trace,
        limit=limit,
        dtype=engine.dtype,
        batch_size=engine.batch_size,
        backend=engine.backend,
        base_url=(engine.base_url or [None])[0],
        store=store,
        report=report,
        n_rollouts=rollouts,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        base_max_new_tokens=max(2 * max_new_tokens, 256),
        forced=forced,
        seed=seed,
        similarity_threshold=threshold,
        answer_style=answer_style,
        outcome=outcome,
        conventions=conventions,
        kl_alpha=kl_alpha,
        split_style=split_style,
        counterfactual_matrix=counterfactual_matrix,
    )
    policy = None
    if budget is not None:
        from thoughtlens.anchors.importance.budget import BudgetPolicy

        policy = BudgetPolicy(
            kind=budget, initial=budget_initial, step=budget_step, ci_half_width=budget_ci, total_fraction=budget_total
        )
    run_pipeline(
        config,
        engine,
        budget=policy,
        problem=problem,
        answer=gt_answer,
        problems=problems,
        limit=limit,
        trace=trace,
        store=store,
        run_id=run_id,
        resume=resume,
        attention=attention,
        report=report,
    )


def run_pipeline(
    config,
    engine=None,
    *,
    problem=None,
    answer=None,
    problems=None,
    limit=1,
    trace=None,
    store="runs/anchors.sqlite",
    run_id=None,
    resume=False,
    attention=False,
    report=None,
    make_todo=None,
    budget=None,
) -> None:
    """Load, build the sampler, run the pipeline with a live progress display, print the table and paths.

    engine: a RuntimeOptions (default: the hf backend on the bundled model, on the CPU).
    make_todo: `fn(tokenizer) -> [Problem]` instead of problem / problems / trace (the demo's fixed trace)."""
    from dataclasses import replace

    from thoughtlens.anchors.importance.black_box import answer_complete
    from thoughtlens.anchors.run_options import check_problem_source
    from thoughtlens.pipeline.anchors import make_problems, run_anchors
    from thoughtlens.pipeline.runtime import RuntimeOptions, build_runtime, load_for

    err = c.console()
    if make_todo is None:  # checked before the model load, like every option
        check_problem_source(problem, problems, trace)
    options = replace(engine or RuntimeOptions(), backend=config.backend)
    # a remote or separate engine samples: only the tokenizer (prompts, sentence token ranges) is loaded here
    with err.status("loading model" if config.backend == "hf" else "loading the tokenizer"):
        lm = load_for(options)
    todo = (
        make_todo(lm.tokenizer)
        if make_todo
        else make_problems(lm.tokenizer, problem=problem, answer=answer, problems=problems, limit=limit, trace=trace)
    )
    sampler = build_runtime(options, model=lm, answer_done=answer_complete).sampler
    config = replace(config, model=config.model or lm.name)
    with c.RichProgress(err) as progress:
        try:
            result = run_anchors(
                todo,
                model=lm,
                sampler=sampler,
                store=store,
                config=config,
                attention=attention,
                report=report,
                run_id=run_id,
                resume=resume,
                budget=budget,
                on_progress=progress,
            )
        except KeyboardInterrupt:
            progress.bar.stop()
            err.print(
                "\n[yellow]interrupted[/]: every finished rollout is stored; run the same command again to resume"
            )
            raise typer.Exit(130) from None
    if hasattr(sampler, "summary"):  # a fleet says which servers did the work and which died
        err.print(str(sampler.summary()), highlight=False)
    show(store, result.run_id, None)
    err.print(
        f"\nresults: {Path(store).resolve()} (run {result.run_id}); "
        f"table: thoughtlens anchors show {store} --run {result.run_id}"
    )
    if result.page_path is not None:
        err.print(f"page: {result.page_path.resolve()} (open it in a browser; it works offline)")


# ---- show -----------------------------------------------------------------------------------------


@app.command("show")
@c.command
def show_command(
    store: str = typer.Argument(None, help="Run store written by `thoughtlens anchors run`."),
    run_id: str = typer.Option(None, "--run", "--run-id", help="Run id (default: the latest anchors run)."),
    problem_id: str = typer.Option(None, "--problem-id", "--problem", help="Only this problem."),
    published: str = typer.Option(
        None,
        "--published",
        help="Instead of a store: a published problem or scenario "
        "directory (problem_*/ or scenario_*/ of ../shared/data/thought-anchors).",
    ),
) -> None:
    """Print the per-sentence importance table of a run (or of a published trace, its own values unchanged)."""
    c.exactly_one(store=store, published=published)
    if published is not None:
        show_published(published)
    else:
        show(store, run_id, problem_id)


def show_published(problem_dir: str) -> None:
    """The published per-sentence values (chunks_labeled.json, via the page's reader) in `show`'s table."""
    from rich.table import Table

    from thoughtlens.report.published import page_data_from_published
    from thoughtlens.trace.published_files import read_chunks_labeled

    data = page_data_from_published(problem_dir, similarity=False)  # title, answer and outcome name
    # The values straight from the file (the page rounds to 4 significant digits).
    chunks = read_chunks_labeled(Path(problem_dir) / "chunks_labeled.json", tuple(k for k, _ in SHOW_COLUMNS))
    rate = (data.get("outcome") or {}).get("label", "accuracy")
    c.console().print(
        f"{data['title']}: the published values; the rate is the {rate} of the paper's rollouts", highlight=False
    )
    table = Table(title=f"base answer {data['trace']['answer']!r}, correct: {data['trace']['is_correct']}")
    table.add_column("#", justify="right")
    table.add_column("sentence", max_width=48, overflow="ellipsis", no_wrap=True)
    for _, label in SHOW_COLUMNS:
        table.add_column(label.replace("acc", "rate") if rate != "accuracy" else label, justify="right")
    for i, chunk in enumerate(chunks):
        cells = [c.fmt(chunk.get(col), digits=4) for col, _ in SHOW_COLUMNS]
        table.add_row(str(i), chunk["chunk"].replace("\n", " "), *cells)
    c.stdout(width=170).print(table)


def show(store_path: str, run_id: str | None, problem_id: str | None) -> None:
    from rich.table import Table

    from thoughtlens.store.run_store import RunStore

    store = RunStore(c.existing_store(store_path))
    runs = store.runs()
    if not runs:
        raise c.StoreError(f"{store_path} holds no runs: run `thoughtlens anchors run --store {store_path}` first")
    run_id = c.pick_run(store, run_id)  # default: the latest anchors run, named on stderr
    metrics = store.metrics(run_id, problem_id)
    from thoughtlens.anchors.importance.definitions import conventions_label

    config = next((r.get("config") for r in runs if r["run_id"] == run_id), None)
    from thoughtlens.anchors.outcomes.spec import outcome_label

    c.console().print(
        f"run {run_id}: metrics by {conventions_label(config)}; the rate is {outcome_label(config)}", highlight=False
    )
    out = c.stdout(width=150)  # ten numeric columns: never squeeze them to 80
    for pid, group in metrics.groupby("problem_id", sort=True) if not metrics.empty else []:
        trace = store.trace(run_id, pid) or {"sentences": [], "answer": None, "is_correct": None}
        texts = {s["index"]: s["text"] for s in trace["sentences"]}
        table = Table(title=f"{pid} (run {run_id}): base answer {trace['answer']!r}, correct: {trace['is_correct']}")
        table.add_column("#", justify="right")
        table.add_column("sentence", max_width=48, overflow="ellipsis", no_wrap=True)
        for _, label in SHOW_COLUMNS:
            table.add_column(label, justify="right")
        for row in group.itertuples():
            cells = [c.fmt(getattr(row, col, None), missing="n/a") for col, _ in SHOW_COLUMNS]
            table.add_row(str(row.sentence_index), texts.get(row.sentence_index, "").replace("\n", " "), *cells)
        out.print(table)
    if metrics.empty:
        out.print(f"run {run_id} has no metrics yet (interrupted before the first problem finished?)")
    notes = store.get_artifact(run_id, "pipeline_notes", None, default=None) or {}
    for text in dict.fromkeys(notes.values()):
        c.console().print(f"[yellow]note:[/] {text}", highlight=False)


# ---- attention (white box) ------------------------------------------------------------------------


@app.command("attention")
@c.command
def attention(
    store: str = typer.Argument(
        None, help="Run store (.sqlite) whose base traces to analyse (results are written back)."
    ),
    trace: list[str] = typer.Option(
        None, "--trace", help="A published base_solution.json or a plain-text trace (repeatable)."
    ),
    model_name: str = typer.Option(
        None, "--model", help="HF id, local dir or .gguf; default: the bundled SmolLM2-135M-Instruct."
    ),
    out_store: str = typer.Option("runs/attention.sqlite", "--store", help="Store to write into with --trace."),
    run_id: str = typer.Option(None, "--run", help="Run id (default: latest anchors run; 'attention' with --trace)."),
    max_tokens: int = typer.Option(
        None, "--max-tokens", help="Analyse only sentences within the first N tokens (long traces)."
    ),
    top_k: int = typer.Option(20, "--top-k", help="How many receiver heads to keep."),
    proximity_ignore: int = typer.Option(
        4, "--proximity-ignore", help="Queries must be at least this many sentences later."
    ),
    control_depth: bool = typer.Option(
        False, "--control-depth/--no-control-depth", help="Rank-normalise each query row first."
    ),
    suppression: bool = typer.Option(
        True, "--suppression/--no-suppression", help="Also compute the S x S suppression matrix."
    ),
    kl_temperature: float = typer.Option(
        0.6, "--kl-temperature", "--temperature", help="Softmax temperature of the suppression KL."
    ),
    kl_reduction: str = typer.Option(
        "paper",
        "--kl-reduction",
        help="Suppression's per-token value: paper (mean log(KL + 1e-9), nucleus-truncated) or raw (mean KL).",
    ),
    suppression_method: str = typer.Option(
        "exact",
        "--suppression-method",
        help=(
            "exact (the paper's S suppressed forwards) or a first-order estimate: "
            "direct_grad (one forward + one backward) or grad_loglik."
        ),
    ),
    batch_size: int = typer.Option(4, "--batch-size", help="Suppressed sentences per forward pass."),
    dtype: str = typer.Option(None, "--dtype", help="fp32 / bf16 (default: bf16 where the CPU has fast bf16)."),
) -> None:
    """Receiver heads, per-sentence receiver scores and attention suppression, written into a run store."""
    from rich.table import Table

    from thoughtlens.anchors.attention.white_box import analyze_attention, load_trace_file, traces_from_store
    from thoughtlens.anchors.run_options import check_attention_options
    from thoughtlens.model.load import load
    from thoughtlens.store.run_store import RunStore

    err = c.console()
    c.exactly_one(store=store, trace=trace)
    check_attention_options(
        top_k=top_k,
        proximity_ignore=proximity_ignore,
        max_tokens=max_tokens,
        kl_temperature=kl_temperature,
        batch_size=batch_size,
        dtype=dtype,
        suppression_method=suppression_method,
    )
    problems: dict = {}
    if store is not None:
        db = RunStore(c.existing_store(store))
        run_id = c.pick_run(db, run_id)
        traces = traces_from_store(db, run_id)
    else:
        traces = {}
        for path in trace:
            pid, t, problem = load_trace_file(path)
            traces[pid], problems[pid] = t, problem
        Path(out_store).parent.mkdir(parents=True, exist_ok=True)
        db, run_id = RunStore(out_store), run_id or "attention"
    with err.status("loading the model"):
        model = load(model_name, dtype=dtype)
    with c.RichProgress(err) as progress:
        result = analyze_attention(
            model,
            traces,
            store=db,
            run_id=run_id,
            problems=problems,
            proximity_ignore=proximity_ignore,
            control_depth=control_depth,
            top_k=top_k,
            suppression=suppression,
            temperature=kl_temperature,
            batch_size=batch_size,
            max_tokens=max_tokens,
            kl_reduction=kl_reduction,
            suppression_method=suppression_method,
            on_progress=progress,
        )
    table = Table(title=f"receiver heads over {len(traces)} traces (kurtosis of vertical scores, mean over traces)")
    for col in ("rank", "layer", "head", "kurtosis"):
        table.add_column(col, justify="right")
    for i, h in enumerate(result.receiver.top, 1):
        table.add_row(str(i), str(h.layer), str(h.head), f"{h.kurtosis:.3f}")
    c.stdout().print(table)
    r = result.receiver.split_half_r
    err.print(
        f"split-half reliability r = {'n/a (needs >= 2 traces)' if r is None else f'{r:.3f}'}; "
        f"wrote run '{run_id}' in {db.path}"
    )


# ---- categories -----------------------------------------------------------------------------------


@app.command("categories")
@c.command
def categories(
    store: str = typer.Argument(None, help="Run store (.sqlite) to analyse; its results are written back to it."),
    published: str = typer.Option(
        None, "--published", help="Folder of DIR/*/problem_*/chunks_labeled.json instead of a store."
    ),
    out_store: str = typer.Option(
        None, "--store", help="With --published: also write the results to this store (run 'published')."
    ),
    run_id: str = typer.Option(None, "--run", help="Run to analyse (default: the latest anchors run)."),
    metric: list[str] = typer.Option(
        None, "--metric", help="Metric column(s); default: counterfactual, resampling, forced KL."
    ),
    labeler: str = typer.Option(
        "learned", "--labeler", help="Labeller for untagged store sentences: learned, rules, encoder, none."
    ),
    labeler_weights: str = typer.Option(
        None,
        "--labeler-weights",
        help="Weights file of --labeler encoder (scripts/train_category_classifier.py --encoder-out FILE).",
    ),
    first_tag_only: bool = typer.Option(
        True, "--first-tag-only/--all-tags", help="Count a sentence under its first tag only."
    ),
    skip_unknown: bool = typer.Option(True, "--skip-unknown/--keep-unknown", help="Drop sentences tagged unknown."),
    clip_negative: bool = typer.Option(
        True, "--clip-negative/--no-clip-negative", help="Count negative importance as 0."
    ),
    convergence: bool = typer.Option(
        True, "--convergence-filter/--no-convergence-filter", help="Drop sentences after convergence."
    ),
    window: int = typer.Option(4, "--convergence-window", help="Consecutive sentences with accuracy > 0.99 or < 0.01."),
    paper_bound: bool = typer.Option(
        True, "--paper-bound/--full-scan", help="Search convergence starts as the paper's loop does."
    ),
    per_trace: bool = typer.Option(
        True, "--per-trace/--pooled", help="Per-trace means, then mean +- SE across traces."
    ),
    debias_degree: int = typer.Option(
        10, "--debias-degree", help="Degree of the position curve for the debiased table (0 = skip)."
    ),
    reference: str = typer.Option("active_computation", "--reference", help="Category the others are compared with."),
    n_boot: int = typer.Option(2000, "--n-boot", help="Bootstrap replicates for every CI."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Category x metric table (hierarchical-bootstrap CIs, n), category differences and the transition matrix."""
    from thoughtlens.anchors.importance import by_category as cat
    from thoughtlens.store.run_store import RunStore

    err = c.console()
    c.exactly_one(store=store, published=published)
    rules = cat.AggregationRules(
        first_tag_only=first_tag_only,
        skip_unknown=skip_unknown,
        clip_negative=clip_negative,
        drop_after_convergence=convergence,
        convergence_window=window,
        convergence_paper_bound=paper_bound,
        per_trace_mean=per_trace,
    )
    db = None
    if published is not None:
        sentences, run_id = cat.load_published(published), run_id or "published"
    else:
        from thoughtlens.trace.labelers import get_labeler

        if (labeler == "encoder") != (labeler_weights is not None):
            raise ConfigError(
                "--labeler encoder needs --labeler-weights FILE, and only it takes one (train the weights "
                "with scripts/train_category_classifier.py --encoder-out FILE)"
            )
        db = RunStore(c.existing_store(store))
        run_id = c.pick_run(db, run_id)
        kwargs = {"path": labeler_weights} if labeler_weights is not None else {}
        sentences = cat.load_store(db, run_id, None if labeler == "none" else get_labeler(labeler, **kwargs))
    results = cat.analyze(
        sentences,
        metric or cat.DEFAULT_METRICS,
        rules,
        reference=reference,
        debias_degree=debias_degree or None,
        n_boot=n_boot,
        seed=seed,
    )
    _print_category_results(c.stdout(width=200), results)
    if out_store is not None:
        db = RunStore(out_store)
        db.create_run(run_id, {"source": "published", "path": str(published)})
    if db is not None:
        names = cat.save_results(db, run_id, results)
        err.print(f"wrote {', '.join(names)} to run '{run_id}' in {db.path}")


def _print_category_results(out, results) -> None:
    """Rich tables: filter counts, category x metric (CIs, n), differences, transitions (CIs, n per row)."""
    from rich.table import Table

    f = lambda x, d=4: c.fmt(x, d, missing="n/a")  # noqa: E731
    n = results.counts
    out.print(
        f"{n.n_after_convergence:,} of {n.n_total:,} sentences kept after the convergence filter; "
        f"{n.n_untagged} untagged, {n.n_unknown} unknown; {n.n_used:,} used from {n.n_traces} traces"
    )
    conf = "95% CI"
    t = Table(title=f"Category x metric: mean of per-trace means, SE across traces, hierarchical bootstrap {conf}")
    for col in ("category", "metric", "mean", "SE", conf, "n traces", "n sentences"):
        t.add_column(col, justify="left" if col in ("category", "metric") else "right")
    for r in results.table.itertuples():
        t.add_row(
            r.category, r.metric, f(r.mean), f(r.se), f"[{f(r.ci_low)}, {f(r.ci_high)}]", str(r.n_traces), str(r.n)
        )
    out.print(t)
    if not results.differences.empty:
        d = results.differences
        t = Table(
            title=f"{d['metric'].iloc[0]}: category - {d['reference'].iloc[0]} "
            "(paired permutation p over traces, BH-adjusted)"
        )
        for col in ("category", "difference", conf, "p", "p (BH)", "Hedges g", "n traces", "n sentences"):
            t.add_column(col, justify="left" if col == "category" else "right")
        for r in d.itertuples():
            t.add_row(
                r.category,
                f(r.difference),
                f"[{f(r.ci_low)}, {f(r.ci_high)}]",
                f(r.p_value),
                f(r.p_bh),
                f(r.hedges_g, 2),
                str(r.n_traces),
                str(r.n),
            )
        out.print(t)
    tr = results.transitions
    short = ["".join(w[0] for w in name.split("_")).upper() for name in tr.categories]
    t = Table(
        title=f"P(next | category), {conf} from resampling {tr.n_traces} traces; n = transitions from the row category"
    )
    t.add_column("from \\ to")
    for s in short:
        t.add_column(s, justify="right")
    t.add_column("n", justify="right")
    for i, name in enumerate(tr.categories):
        cells = [
            f"{f(tr.probs[i, j], 2)} [{f(tr.ci_low[i, j], 2)}, {f(tr.ci_high[i, j], 2)}]" for j in range(len(short))
        ]
        t.add_row(f"{name} ({short[i]})", *cells, str(int(tr.counts[i].sum())))
    out.print(t)
