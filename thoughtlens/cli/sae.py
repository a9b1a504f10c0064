"""`thoughtlens sae train|eval|features|store-features`: sparse autoencoders on the command line
(library: thoughtlens.sae)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Sparse autoencoders: train on a model's activations, evaluate, read features on a trace.",
    no_args_is_help=True,
)
err = Console(stderr=True, soft_wrap=True)


def _quiet() -> None:
    from thoughtlens.cli._common import quiet_third_party

    quiet_third_party()


def _fail(exc: Exception) -> None:
    err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
    raise typer.Exit(1)


def _progress_printer():
    import time

    last = [0.0]

    def show(event) -> None:
        now = time.perf_counter()
        if event.note:
            err.print(event.note)
        elif now - last[0] > 2 or (event.total and event.completed >= event.total):
            last[0] = now
            total = f"/{event.total}" if event.total else ""
            err.print(
                f"{event.task}: {event.completed}{total} ({event.elapsed_s:.0f} s) {event.description}", highlight=False
            )

    return show


def _default_hook(model) -> str:
    return f"blocks.{model.cfg.n_layers // 2}.hook_resid_post"


@app.command()
def train(
    out: Path = typer.Option(Path("runs/sae"), "--out", "-o", help="directory to save the SAE to (SAELens format)"),
    model_name: str = typer.Option(None, "--model", help="hub id, directory or .gguf (default: the bundled model)"),
    hook: str = typer.Option(None, help="hook point (default: the middle layer's hook_resid_post)"),
    architecture: str = typer.Option(
        "topk", help="standard, topk, batchtopk, jumprelu, matryoshka_batchtopk, transcoder"
    ),
    hook_out: str = typer.Option(
        None, help="transcoders: the hook to predict (e.g. blocks.15.hook_mlp_out; input: --hook)"
    ),
    expansion: int = typer.Option(8, help="d_sae = expansion x the hook's width"),
    k: int = typer.Option(32, help="active latents per token (TopK family)"),
    corpus: str = typer.Option("gsm8k", help="'gsm8k', a .txt / .jsonl / .parquet file"),
    column: str = typer.Option(None, help="text column of a .jsonl / .parquet corpus"),
    holdout: int = typer.Option(150, help="leave the corpus's last N documents out (what `sae eval` reads by default)"),
    tokens: int = typer.Option(50_000, help="training activations"),
    batch_size: int = typer.Option(256),
    lr: float = typer.Option(1e-3),
    cache: Path = typer.Option(None, help="activation cache directory (reused by later runs)"),
    checkpoint_dir: Path = typer.Option(None, help="checkpoint here; rerun the same command to resume"),
    seed: int = typer.Option(0),
) -> None:
    """Train an SAE on one hook of a model over a text corpus and save it."""
    from thoughtlens.errors import SAEError, ThoughtlensError
    from thoughtlens.model.load import load
    from thoughtlens.sae import ActivationSource, TrainConfig, build_sae, read_corpus, save_sae, train_saes

    _quiet()
    try:
        model = load(model_name)
        hook = hook or _default_hook(model)
        if (architecture == "transcoder") != (hook_out is not None):
            raise SAEError(
                "a transcoder needs --hook (its input, e.g. blocks.15.ln2.hook_normalized) and --hook-out "
                "(e.g. blocks.15.hook_mlp_out); other architectures take --hook only"
            )
        texts = read_corpus(corpus, column)
        texts = texts[:-holdout] if 0 < holdout < len(texts) else texts
        hooks = [hook] if hook_out is None else [hook, hook_out]
        source = ActivationSource(
            model,
            hooks,
            texts,
            max_tokens=tokens,
            batch_size=batch_size,
            buffer_size=min(2**15, tokens),
            cache_dir=cache,
            seed=seed,
            on_progress=_progress_printer(),
        )
        d = source.widths[0]
        sae = build_sae(
            architecture=architecture,
            d_in=d,
            d_sae=expansion * d,
            hook_name=hook,
            model_name=model.name,
            k=k if "topk" in architecture else None,
            hook_name_out=hook_out,
            d_out=source.widths[1] if hook_out else None,
            apply_b_dec_to_input=hook_out is None,
        )
        result = train_saes(
            {architecture: sae},
            source,
            TrainConfig(
                total_activations=tokens,
                lr=lr,
                seed=seed,
                dead_window=max(1, min(50_000, tokens // 2)),
                checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
            ),
            on_progress=_progress_printer(),
        )
        path = save_sae(result.saes[architecture], out)
    except ThoughtlensError as exc:
        _fail(exc)
    last = result.history[-1] if result.history else {}
    err.print(
        f"trained {architecture} ({expansion}x{d}) at {hook}: L0 {last.get('l0', float('nan')):.1f}, "
        f"FVU {last.get('fvu', float('nan')):.3f} (last batch)",
        highlight=False,
    )
    Console().print(f"saved {path}")


@app.command("eval")
def eval_(
    sae_path: Path = typer.Argument(..., help="SAE directory (cfg.json + sae_weights.safetensors)"),
    model_name: str = typer.Option(None, "--model", help="default: the bundled model"),
    corpus: str = typer.Option("gsm8k"),
    column: str = typer.Option(None),
    last_docs: int = typer.Option(
        150, help="evaluate on the corpus's last N documents (text the SAE was not trained on)"
    ),
    tokens: int = typer.Option(4096, help="evaluation tokens"),
) -> None:
    """L0, FVU, CE loss recovered (spliced vs zero-ablation), dead and dense fractions."""
    from thoughtlens.errors import ThoughtlensError
    from thoughtlens.model.load import load
    from thoughtlens.sae import read_corpus
    from thoughtlens.sae.evaluate import evaluate_sae
    from thoughtlens.sae.io import load_sae

    _quiet()
    try:
        sae = load_sae(sae_path)  # before the model: a bad file fails fast
        texts = read_corpus(corpus, column)[-last_docs:]
        model = load(model_name)
        m = evaluate_sae(model, sae, texts, max_tokens=tokens, on_progress=_progress_printer())
    except ThoughtlensError as exc:
        _fail(exc)
    table = Table(title=f"{sae.cfg.architecture} SAE at {sae.cfg.hook_name} ({m.n_tokens} tokens)")
    for col in ("L0", "FVU", "CE recovered", "CE clean", "CE spliced", "CE zero", "dead", "dense"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{m.l0:.1f}",
        f"{m.fvu:.3f}",
        f"{m.ce_loss_recovered:.3f}",
        f"{m.ce_clean:.3f}",
        f"{m.ce_spliced:.3f}",
        f"{m.ce_zero:.3f}",
        f"{m.dead_fraction:.1%}",
        f"{m.dense_fraction:.1%}",
    )
    Console().print(table)


@app.command()
def features(
    sae_path: Path = typer.Argument(..., help="SAE directory"),
    prompt: str = typer.Option(..., help="the prompt of the trace"),
    completion: str = typer.Option(..., help="the model's completion (chain of thought)"),
    model_name: str = typer.Option(None, "--model"),
    top: int = typer.Option(5, help="features per sentence"),
    feature: int = typer.Option(None, help="also show this feature's logit effects"),
) -> None:
    """Top SAE features of each sentence of a chain of thought (and one feature's logit effects)."""
    from thoughtlens.errors import ThoughtlensError
    from thoughtlens.model.load import load
    from thoughtlens.sae.features import logit_effects, sentence_features
    from thoughtlens.sae.io import load_sae
    from thoughtlens.trace.reasoning_trace import ReasoningTrace

    _quiet()
    try:
        sae = load_sae(sae_path)
        model = load(model_name)
        trace = ReasoningTrace.parse(prompt, completion)
        feats = sentence_features(model, sae, trace)
        effects = logit_effects(model, sae, feature) if feature is not None else None
    except ThoughtlensError as exc:
        _fail(exc)
    table = Table(title=f"top features per sentence ({sae.cfg.architecture} at {sae.cfg.hook_name})")
    table.add_column("#", justify="right")
    table.add_column("sentence")
    table.add_column("features (id: activation)")
    for s in trace.sentences:
        vals, ids = feats[s.index].topk(min(top, feats.shape[1]))
        shown = ", ".join(f"{int(i)}: {float(v):.2f}" for v, i in zip(vals, ids) if v > 0) or "-"
        table.add_row(str(s.index), s.text[:80], shown)
    Console().print(table)
    if effects is not None:
        t = Table(title=f"feature {feature}: logit effects through W_U")
        for col in ("direction", "token", "effect"):
            t.add_column(col)
        for row in effects.itertuples():
            t.add_row(row.direction, repr(row.token), f"{row.effect:+.3f}")
        Console().print(t)


@app.command("store-features")
def store_features(
    sae_path: Path = typer.Argument(..., help="SAE directory"),
    store: Path = typer.Argument(..., help="run store (.sqlite) written by `thoughtlens anchors run`"),
    run_id: str = typer.Option(None, "--run", help="run id (default: the latest anchors run)"),
    problem_ids: list[str] = typer.Option(
        None, "--problem", help="only these problems (repeat; default: all with a trace)"
    ),
    model_name: str = typer.Option(None, "--model", help="the run's model (default: the bundled model)"),
    top: int = typer.Option(5, help="features kept per sentence"),
    top_sentences: int = typer.Option(10, help="top-activating sentences kept per feature"),
    tokens: int = typer.Option(8, help="tokens shown per feature and direction (logit effects)"),
    labels: Path = typer.Option(
        None, help="JSON {feature id: label} shown on the page (e.g. Neuronpedia explanations)"
    ),
) -> None:
    """Compute every trace's SAE features of a run and store them for the report page's feature panel."""
    import json

    from thoughtlens.errors import SAEError, StoreError, ThoughtlensError
    from thoughtlens.model.load import load
    from thoughtlens.sae.io import load_sae
    from thoughtlens.sae.run_features import store_run_features
    from thoughtlens.store.run_store import RunStore, pick_run_id

    _quiet()
    try:
        names = None
        if labels is not None:
            try:
                names = {int(k): str(v) for k, v in json.loads(labels.read_text(encoding="utf-8")).items()}
            except (OSError, ValueError, AttributeError) as exc:
                raise SAEError(
                    f'cannot read labels {labels} ({exc}): pass a JSON object {{"12": "label", ...}}'
                ) from None
        sae = load_sae(sae_path)
        if not store.is_file():  # RunStore would create an empty store here
            raise StoreError(f"no run store at {store}: pass the .sqlite file written by `thoughtlens anchors run`")
        run_store = RunStore(store)
        chosen, note = pick_run_id(run_store, run_id, param="--run")  # default: the latest anchors run
        if run_id is None:
            err.print(note, markup=False, highlight=False)
        model = load(model_name)
        summary = store_run_features(
            model,
            sae,
            run_store,
            chosen,
            problem_ids=problem_ids or None,
            top_per_sentence=top,
            top_sentences=top_sentences,
            n_tokens=tokens,
            labels=names,
            on_progress=_progress_printer(),
        )
    except ThoughtlensError as exc:
        _fail(exc)
    Console().print(
        f"stored SAE features of {summary['problems']} trace(s) ({summary['skipped']} already done), "
        f"{summary['features']} features in the run table; see them with `thoughtlens report {store}`"
    )
