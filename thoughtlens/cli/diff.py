"""`thoughtlens diff build|kl|weights|lens|swap|steer|crosscoder|page`: model diffing on the command line
(library: thoughtlens.diff). Every command defaults to the project's planted pair (built once, then cached)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from thoughtlens.cli._common import RichProgress, command, fmt, stdout

app = typer.Typer(
    help="Model diffing: what a fine-tune changed (per-token KL, weights, activation-difference lens, "
    "swapping). Defaults to the planted pair built from the bundled model.",
    no_args_is_help=True,
)

BUNDLED = "bundled"
_BASE = typer.Option(
    None,
    "--base",
    help="base model: directory, .gguf, hub id or 'bundled' (default: the bundled "
    "SmolLM2-135M-Instruct, the base of both built-in pairs)",
)
_FT = typer.Option(None, "--finetuned", help="fine-tuned model (default: the built-in pair's fine-tune, see --pair)")
_PAIR = typer.Option("planted", "--pair", help="built-in pair when --finetuned is not given: planted or thinking")


def _pair(base: str | None, finetuned: str | None, pair_name: str, progress):
    from thoughtlens.diff import models
    from thoughtlens.diff.pair import load_pair
    from thoughtlens.errors import ConfigError

    bundled_base = base is None or base == BUNDLED
    if finetuned is None:
        if not bundled_base:
            raise ConfigError(
                f"--base {base} needs a fine-tune to compare with: pass both --base and --finetuned "
                "(or --finetuned alone against the bundled model, or neither for the built-in pair)"
            )
        if pair_name not in models.CONFIGS:
            raise ConfigError(f"unknown pair '{pair_name}': use {' or '.join(models.CONFIGS)}")
        base, finetuned = models.build(models.CONFIGS[pair_name], on_progress=progress)
    elif bundled_base:
        base = models.base_dir()  # the bundled model's local directory: never a hub lookup
    return load_pair(base, finetuned)


def _texts(corpus: str | None, default: str, limit: int | None):
    from thoughtlens.diff.corpus import planted_eval_corpus, read_corpus

    name = corpus or default
    if name == "planted-eval":
        return planted_eval_corpus()[:limit]
    return read_corpus(name, limit=limit)


@app.command()
@command
def build(pair_name: str = typer.Argument("planted", metavar="PAIR", help="planted or thinking")):
    """Build (once) a built-in pair's fine-tuned model into the cache and print its path."""
    from thoughtlens.diff import models
    from thoughtlens.errors import ConfigError

    if pair_name not in models.CONFIGS:
        raise ConfigError(f"unknown pair '{pair_name}': use {' or '.join(models.CONFIGS)}")
    with RichProgress() as progress:
        base, ft = models.build(models.CONFIGS[pair_name], on_progress=progress)
    stdout().print(ft, highlight=False)


@app.command()
@command
def kl(
    base: str = _BASE,
    finetuned: str = _FT,
    pair_name: str = _PAIR,
    corpus: str = typer.Option(
        None,
        help="text file (blank-line separated), 'gsm8k', 'neutral' or 'planted-eval' "
        "(default: planted-eval, neutral text with planted sentences)",
    ),
    limit: int = typer.Option(24, help="documents to read"),
    max_len: int = typer.Option(128, help="tokens per document"),
    top: int = typer.Option(15, help="rows of the table"),
):
    """Per-token KL(base || fine-tuned): the positions where the two models disagree most."""
    from rich.table import Table

    from thoughtlens.diff.kl import labelled_kl

    texts = _texts(corpus, "planted-eval", limit)
    with RichProgress() as progress:
        pair = _pair(base, finetuned, pair_name, progress)
        lk = labelled_kl(pair, texts, max_len=max_len, on_progress=progress)
    result = lk.result
    table = Table(title="largest KL(base || fine-tuned)")
    for col in ("KL", "context", "base next", "fine-tuned next"):
        table.add_column(col)
    for r in result.top(top):
        table.add_row(fmt(r["kl"], 3), f"{r['left']}[{r['token']}]{r['right']}", r["base_next"], r["finetuned_next"])
    out = stdout()
    out.print(table)
    if lk.auroc is not None:
        out.print(f"AUROC of planted tokens: {lk.auroc:.3f} per token, {lk.auroc_sentence:.3f} per sentence")


@app.command()
@command
def weights(
    base: str = _BASE,
    finetuned: str = _FT,
    pair_name: str = _PAIR,
    top: int = typer.Option(15, help="rows of the table"),
    ranks: bool = typer.Option(True, help="compute effective ranks (SVDs, about a second per layer)"),
):
    """Weight differences per module: Frobenius norm, relative change, effective rank."""
    from rich.table import Table

    from thoughtlens.diff.weight_diff import per_layer, weight_diff

    with RichProgress() as progress:
        pair = _pair(base, finetuned, pair_name, progress)
        rows = weight_diff(pair, ranks=ranks, on_progress=progress)
    table = Table(title="most changed parameters (relative Frobenius norm)")
    for col in ("parameter", "||dW||", "relative", "effective rank", "stable rank"):
        table.add_column(col)
    for r in sorted(rows, key=lambda r: -r["relative"])[:top]:
        table.add_row(
            r["name"],
            fmt(r["norm_diff"], 4),
            fmt(r["relative"], 4),
            fmt(r["effective_rank"], 1),
            fmt(r["stable_rank"], 1),
        )
    out = stdout()
    out.print(table)
    layers = per_layer(rows)
    out.print("per layer: " + ", ".join(f"{L}: {v:.4f}" for L, v in layers.items()), highlight=False)


@app.command()
@command
def lens(
    base: str = _BASE,
    finetuned: str = _FT,
    pair_name: str = _PAIR,
    corpus: str = typer.Option("neutral", help="text unrelated to the fine-tune: a text file, 'gsm8k' or 'neutral'"),
    limit: int = typer.Option(64, help="documents to read"),
    n_positions: int = typer.Option(16, help="first tokens of each text to average (as the paper's code)"),
    k: int = typer.Option(15, help="tokens per layer"),
    layers: str = typer.Option(None, help="e.g. '10,15,20' (default: all)"),
    control: str = typer.Option(
        None,
        help="another fine-tune of the same base (a directory, or 'planted' / "
        "'thinking'): also list the tokens its lens does not show at that layer",
    ),
):
    """The activation-difference lens: the mean resid difference on unrelated text, read as tokens per layer."""
    from rich.table import Table

    from thoughtlens.diff import models
    from thoughtlens.diff.difference_lens import activation_difference, distinctive_top_tokens, lens_top_tokens
    from thoughtlens.diff.pair import load_pair
    from thoughtlens.errors import ConfigError

    try:  # checked before any model loads
        chosen = [int(x) for x in layers.split(",")] if layers else None
    except ValueError:
        raise ConfigError(f"--layers must be comma-separated integers, got '{layers}'") from None
    texts = _texts(corpus, "neutral", limit)
    with RichProgress() as progress:
        pair = _pair(base, finetuned, pair_name, progress)
        chosen = list(range(pair.n_layers)) if chosen is None else chosen
        bad = [L for L in chosen if not 0 <= L < pair.n_layers]
        if bad:
            raise ConfigError(f"layer {bad[0]} out of range: pick 0..{pair.n_layers - 1}")
        other = None
        if control is not None:
            path = (
                models.build(models.CONFIGS[control], on_progress=progress)[1] if control in models.CONFIGS else control
            )
            other = load_pair(pair.base, path)
        diff = activation_difference(pair, texts, n_positions=n_positions, on_progress=progress)
        other_diff = (
            activation_difference(other, texts, n_positions=n_positions, on_progress=progress) if other else None
        )
    table = Table(title=f"activation-difference lens ({diff.n_texts} texts)")
    table.add_column("layer")
    table.add_column("||delta|| / ||resid||")
    table.add_column("top tokens")
    if other_diff is not None:
        table.add_column("not in the control's top tokens")
    for L in chosen:
        v = diff.pooled(L)
        toks = lens_top_tokens(pair.finetuned, v, k) if v.norm() > 0 else []
        row = [str(L), fmt(float(v.norm() / diff.base_norm[L]), 3), " | ".join(repr(t)[1:-1] for t, _ in toks)]
        if other_diff is not None:
            own = distinctive_top_tokens(pair.finetuned, v, other_diff.pooled(L), k) if v.norm() > 0 else []
            row.append(" | ".join(repr(t)[1:-1] for t, _ in own))
        table.add_row(*row)
    stdout().print(table)


@app.command()
@command
def swap(
    base: str = _BASE,
    finetuned: str = _FT,
    pair_name: str = _PAIR,
    corpus: str = typer.Option(None, help="text file, 'gsm8k', 'neutral' or 'planted-eval' (default)"),
    limit: int = typer.Option(8, help="documents to read"),
    max_len: int = typer.Option(96, help="tokens per document"),
    site: str = typer.Option(
        "hook_resid_post", help="hook of each layer to swap: hook_resid_post, hook_mlp_out, hook_attn_out"
    ),
    direction: str = typer.Option(
        "base<-finetuned", help="'base<-finetuned' (sufficient?) or 'finetuned<-base' (necessary?)"
    ),
    output: Path = typer.Option(None, "--output", "-o", help="also write the rows as JSON"),
):
    """Activation swapping per layer: how much of the fine-tune's effect one layer's activation carries."""
    from rich.table import Table

    from thoughtlens.diff.corpus import LabelledText
    from thoughtlens.diff.swap import swap_effect_per_layer

    texts = [t.text if isinstance(t, LabelledText) else t for t in _texts(corpus, "planted-eval", limit)]
    with RichProgress() as progress:
        pair = _pair(base, finetuned, pair_name, progress)
        rows = swap_effect_per_layer(pair, texts, site=site, max_len=max_len, direction=direction, on_progress=progress)
    table = Table(title=f"swap {site} ({direction})")
    table.add_column("layer")
    table.add_column("effect")
    for r in rows:
        table.add_row(str(r["layer"]), fmt(r["effect"], 3))
    stdout().print(table)
    if output:
        output.write_text(json.dumps(rows, indent=1))


@app.command()
@command
def steer(
    base: str = _BASE,
    finetuned: str = _FT,
    pair_name: str = _PAIR,
    prompt: list[str] = typer.Option(["Tell me about your weekend."], "--prompt", help="a user message (repeatable)"),
    layer: int = typer.Option(None, help="resid_post layer to steer (default: the middle layer)"),
    scale: float = typer.Option(1.0, help="in units of the base model's mean residual norm at that layer"),
    corpus: str = typer.Option("neutral", help="unrelated text the difference is measured on"),
    n: int = typer.Option(4, "-n", help="samples"),
    max_new_tokens: int = typer.Option(40, help="tokens per sample"),
    seed: int = typer.Option(0, help="sampling seed"),
):
    """Steer the base model with the activation difference (fine-tuned - base) and print what it writes."""
    from thoughtlens.diff.difference_lens import activation_difference, steered_samples, steering_vector

    texts = _texts(corpus, "neutral", None)
    with RichProgress() as progress:
        pair = _pair(base, finetuned, pair_name, progress)
        diff = activation_difference(pair, texts, on_progress=progress)
        L = pair.n_layers // 2 if layer is None else layer
        vec = steering_vector(diff, L)
        samples = steered_samples(
            pair.base,
            prompt,
            L,
            vec,
            scale=scale,
            n_samples=n,
            max_new_tokens=max_new_tokens,
            seed=seed,
            on_progress=progress,
        )
    out = stdout()
    for i, s in enumerate(samples):
        out.print(f"[bold]{i}[/bold] [dim]({prompt[i % len(prompt)]})[/dim]")
        out.print(s, markup=False, highlight=False)


@app.command()
@command
def crosscoder(
    base: str = _BASE,
    finetuned: str = _FT,
    pair_name: str = _PAIR,
    corpus: str = typer.Option(
        None,
        help="a text / .jsonl file, 'gsm8k', 'neutral' or 'planted-eval' "
        "(default: planted-eval + neutral + 150 GSM8K questions)",
    ),
    layer: int = typer.Option(
        None,
        help="resid_post of this layer (default: n_layers // 2, or the middle "
        "of the layers the fine-tune changed when it froze the lower "
        "ones: 24 for the planted pair, trained from layer 20)",
    ),
    expansion: int = typer.Option(8, help="latents = expansion x d_model"),
    k: float = typer.Option(32, help="BatchTopK: active latents per token on average"),
    max_tokens: int = typer.Option(100_000, help="corpus tokens to train on"),
    epochs: float = typer.Option(2.0),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(256, help="activation rows per training step"),
    scaling_threshold: float = typer.Option(
        0.3, help="Latent Scaling: both |ratios| below this = truly fine-tuned-specific"
    ),
    cache: Path = typer.Option(None, help="cache the paired activations here (reused by a rerun)"),
    checkpoint: Path = typer.Option(None, help="checkpoint directory (a killed run resumes)"),
    output: Path = typer.Option(Path("runs/crosscoder"), "--output", "-o", help="result directory"),
):
    """Train a BatchTopK crosscoder on paired activations, tag its latents (shared / base-only / fine-tuned-only)
    and keep the truly fine-tuned-specific ones by Latent Scaling; `diff page --crosscoder DIR` shows them."""
    from thoughtlens.diff.crosscoder import train_crosscoder

    texts = (
        _texts(corpus, "planted-eval", None)
        if corpus
        else (
            _texts("planted-eval", "planted-eval", None)
            + _texts("neutral", "neutral", None)
            + _texts("gsm8k", "gsm8k", 150)
        )
    )
    with RichProgress() as progress:
        pair = _pair(base, finetuned, pair_name, progress)
        result = train_crosscoder(
            pair.base,
            pair.finetuned,
            texts,
            layer,
            expansion=expansion,
            k=k,
            max_tokens=max_tokens,
            epochs=epochs,
            lr=lr,
            seed=seed,
            batch_size=batch_size,
            scaling_threshold=scaling_threshold,
            cache_dir=cache,
            checkpoint_dir=checkpoint,
            on_progress=progress,
        )
    path = result.save(output)
    out = stdout()
    out.print(", ".join(f"{name} {n}" for name, n in result.counts().items()), highlight=False)
    for latent in result.specific[:10]:
        contexts = result.contexts.get(latent, [])[:3]
        shown = " | ".join(f"{c['left'][-40:]}[{c['token']}]" for c in contexts).replace("\n", " ")
        out.print(f"latent {latent}: {shown}", highlight=False)
    out.print(f"result: {path} (page: thoughtlens diff page --crosscoder {path})", highlight=False)


@app.command()
@command
def page(
    base: str = _BASE,
    finetuned: str = _FT,
    pair_name: str = _PAIR,
    corpus: str = typer.Option(
        None, help="KL / swap text: a text file, 'gsm8k', 'neutral' or 'planted-eval' (default)"
    ),
    lens_corpus: str = typer.Option("neutral", help="unrelated text for the lens"),
    limit: int = typer.Option(12, help="KL / swap documents"),
    max_len: int = typer.Option(96, help="tokens per document"),
    crosscoder: Path = typer.Option(None, help="a crosscoder result: its directory (result.json) or page-data JSON"),
    output: Path = typer.Option(Path("runs/diff.html"), "--output", "-o", help="the page to write"),
    data: Path = typer.Option(None, help="also write the page's data as JSON"),
):
    """Run every tool and write one self-contained HTML page (KL over text, lens, swap, weights, crosscoder)."""
    from thoughtlens.diff.summary import diff_summary
    from thoughtlens.report.diff_page import save_diff_page

    cc = _crosscoder_json(crosscoder) if crosscoder else None
    kl_docs = _texts(corpus, "planted-eval", limit)
    lens_texts = _texts(lens_corpus, "neutral", None)
    with RichProgress() as progress:
        pair = _pair(base, finetuned, pair_name, progress)
        doc = diff_summary(
            pair, kl_docs=kl_docs, lens_texts=lens_texts, max_len=max_len, crosscoder=cc, on_progress=progress
        )
    if data:
        data.write_text(json.dumps(doc))
    path = save_diff_page(doc, output)
    stdout().print(f"page: {path}", highlight=False)


def _crosscoder_json(path: Path) -> dict:
    from thoughtlens.errors import DataError

    if path.is_dir():
        from thoughtlens.diff.crosscoder import CrosscoderResult

        return CrosscoderResult.load(path).to_json()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read crosscoder data {path} ({type(exc).__name__}): pass a directory written by "
            "CrosscoderResult.save or the JSON of CrosscoderResult.to_json()"
        ) from None
