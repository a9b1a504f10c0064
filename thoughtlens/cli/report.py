"""`thoughtlens report`: one self-contained HTML page for a trace of a run store or a published directory."""

from __future__ import annotations

from pathlib import Path

import typer

from thoughtlens.cli import _common as c


@c.command
def report(
    store: str = typer.Argument(None, help="Run store (.sqlite) written by `thoughtlens anchors run`."),
    published: str = typer.Option(
        None, "--published", help="A published Thought Anchors problem directory instead of a store."
    ),
    output: str = typer.Option("report.html", "-o", "--output", help="HTML file to write."),
    run_id: str = typer.Option(None, "--run", help="Run id (default: the latest anchors run)."),
    problem_id: str = typer.Option(
        None, "--problem-id", "--problem", help="Problem id (needed when the run holds several problems)."
    ),
    similarity: bool = typer.Option(
        True, "--similarity/--no-similarity", help="Flag resampled alternatives similar/different (MiniLM, CPU)."
    ),
) -> None:
    """Write one self-contained HTML page (no network) for a trace: graph, sentence panel, attention, categories."""
    from thoughtlens.report import report_published, report_store

    err = c.console()
    c.exactly_one(store=store, published=published)
    if store is not None and Path(store).is_file():  # name the run used: the latest anchors run unless given
        from thoughtlens.report.from_store import REPORT_KINDS
        from thoughtlens.store.run_store import RunStore

        with RunStore(store) as s:
            run_id = c.pick_run(s, run_id, REPORT_KINDS)
    with err.status("building the report page"):
        page = (
            report_published(published, similarity=similarity)
            if published is not None
            else report_store(store, run_id, problem_id, similarity=similarity)
        )
    path = page.save(output)
    err.print(f"wrote {path} ({len(page.html) / 1e6:.1f} MB, {len(page.data['sentences'])} sentences)")
