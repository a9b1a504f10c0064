"""Recompute different_trajectories_fraction and overdeterminedness from the published Thought
Anchors resamples and compare them with the published values.

The last chunk of each trace is left out: the paper stores 0.0 there for both metrics because
its code returns early when there is no next chunk (not a real measurement).

For every chunk i of every problem: original = chunks_labeled.json[i]["chunk"],
resampled = chunks_resampled.json[str(i)] (~100 first sentences of rollouts from the prefix
before chunk i). Prints mean / max absolute error per problem and overall.

    .venv/bin/python scripts/validate_dtf.py                         # all 20 traces (~10-30 min)
    .venv/bin/python scripts/validate_dtf.py --limit 3 --smallest    # the 3 cheapest traces
    .venv/bin/python scripts/validate_dtf.py --only correct_base_solution/problem_2238
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from thoughtlens.anchors.importance.similarity import (
    DEFAULT_THRESHOLD,
    cosine_similarity,
    different_trajectories_fraction,
    embed_sentences,
    overdeterminedness,
)

DEFAULT_DIR = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "thought-anchors" / "deepseek-r1-distill-qwen-14b"
)
app = typer.Typer(add_completion=False)


def load_problem(problem_dir: Path) -> tuple[list[dict], dict[str, list[str]]]:
    """(chunks_labeled, chunks_resampled) of one published problem directory."""
    labeled = json.loads((problem_dir / "chunks_labeled.json").read_text())
    resampled = json.loads((problem_dir / "chunks_resampled.json").read_text())
    return labeled, resampled


def problem_texts(labeled: list[dict], resampled: dict[str, list[str]]) -> list[str]:
    """Every distinct string of one problem (chunks and their resamples), for one embedding call."""
    texts = [c["chunk"] for c in labeled] + [r for rs in resampled.values() for r in rs if isinstance(r, str)]
    return list(dict.fromkeys(texts))


def recompute(
    labeled: list[dict], resampled: dict[str, list[str]], vectors: dict[str, np.ndarray], threshold: float
) -> list[dict]:
    """Per chunk: published and recomputed DTF and overdeterminedness.

    Skipped: chunks without resamples, and the last chunk, whose published values are a
    placeholder 0.0 (the paper's code returns early when there is no next chunk to compare with).
    """
    rows, last = [], max(c["chunk_idx"] for c in labeled)
    for chunk in labeled:
        if chunk["chunk_idx"] == last:
            continue
        resamples = resampled.get(str(chunk["chunk_idx"]), [])
        if not resamples:
            continue
        present = [r for r in resamples if isinstance(r, str) and r.strip()]
        sims = np.full(len(resamples), np.nan)
        if present:
            mask = [isinstance(r, str) and bool(r.strip()) for r in resamples]
            sims[mask] = cosine_similarity(vectors[chunk["chunk"]], np.stack([vectors[r] for r in present]))[0]
        rows.append(
            {
                "chunk_idx": chunk["chunk_idx"],
                "dtf_published": chunk["different_trajectories_fraction"],
                "dtf": different_trajectories_fraction(
                    chunk["chunk"], resamples, threshold=threshold, similarities=sims
                ),
                "od_published": chunk["overdeterminedness"],
                "od": overdeterminedness(resamples),
            }
        )
    return rows


def errors(rows: list[dict]) -> dict[str, float]:
    dtf = np.array([abs(r["dtf"] - r["dtf_published"]) for r in rows])
    od = np.array([abs(r["od"] - r["od_published"]) for r in rows])
    return {
        "n_chunks": len(rows),
        "dtf_mae": float(dtf.mean()),
        "dtf_max": float(dtf.max()),
        "od_mae": float(od.mean()),
        "od_max": float(od.max()),
    }


@app.command()
def main(
    data_dir: Path = typer.Option(DEFAULT_DIR, help="the published deepseek-r1-distill-qwen-14b directory"),
    limit: int = typer.Option(0, help="use only this many problems (0 = all 20)"),
    smallest: bool = typer.Option(False, help="with --limit: take the problems with the fewest distinct sentences"),
    only: list[str] = typer.Option(
        [], help="problem paths relative to data-dir, e.g. correct_base_solution/problem_2238"
    ),
    threshold: float = typer.Option(DEFAULT_THRESHOLD, help="cosine similarity below which a resample is 'different'"),
    json_out: Path = typer.Option(None, help="also write per-problem figures as JSON here"),
) -> None:
    if not data_dir.is_dir():
        raise typer.BadParameter(
            f"{data_dir} not found; pass --data-dir pointing at "
            "shared/data/thought-anchors/deepseek-r1-distill-qwen-14b"
        )
    problems = [data_dir / p for p in only] if only else sorted(data_dir.glob("*/problem_*"))
    loaded = {p: load_problem(p) for p in problems}
    if smallest:
        problems = sorted(problems, key=lambda p: len(problem_texts(*loaded[p])))
    if limit:
        problems = problems[:limit]
    console, results, all_rows = Console(width=120), {}, []
    with Progress(console=console) as progress:
        task = progress.add_task("embedding", total=sum(len(problem_texts(*loaded[p])) for p in problems))
        for p in problems:
            texts = problem_texts(*loaded[p])
            vectors = dict(zip(texts, embed_sentences(texts)))
            progress.advance(task, len(texts))
            rows = recompute(*loaded[p], vectors, threshold)
            results[str(p.relative_to(data_dir))] = errors(rows)
            all_rows += rows
    results["ALL"] = errors(all_rows)
    _print_table(console, results, threshold)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))


def _print_table(console: Console, results: dict[str, dict], threshold: float) -> None:
    table = Table(title=f"published vs recomputed (MiniLM, threshold {threshold})")
    for col in ("problem", "chunks", "DTF MAE", "DTF max", "OD MAE", "OD max"):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(
            name,
            str(r["n_chunks"]),
            f"{r['dtf_mae']:.4f}",
            f"{r['dtf_max']:.4f}",
            f"{r['od_mae']:.4f}",
            f"{r['od_max']:.4f}",
        )
    console.print(table)


if __name__ == "__main__":
    app()
