"""Self-contained HTML report pages (no network): trace graph, sentence panel, attention views, categories,
and where a run has them, the SAE feature panel (report/sae_panel.py) and the transplant curve
(report/transplant_view.py).

    page = report_published("…/correct_base_solution/problem_2238")   # or report_store("run.sqlite")
    page.save("page.html"); page                                         # Jupyter shows it inline
"""

from __future__ import annotations

from pathlib import Path

from thoughtlens.report.from_store import page_data_from_store
from thoughtlens.report.page import ReportPage, render_page
from thoughtlens.report.page_data import SCHEMA, validate_page_data
from thoughtlens.report.published import page_data_from_published


def report_published(problem_dir: str | Path, **kwargs) -> ReportPage:
    """The page for one published Thought Anchors problem directory (kwargs: page_data_from_published)."""
    return ReportPage(page_data_from_published(problem_dir, **kwargs))


def report_store(store, run_id: str | None = None, problem_id: str | None = None, **kwargs) -> ReportPage:
    """The page for one problem of a run in a RunStore (kwargs: page_data_from_store)."""
    return ReportPage(page_data_from_store(store, run_id, problem_id, **kwargs))


__all__ = [
    "SCHEMA",
    "ReportPage",
    "page_data_from_published",
    "page_data_from_store",
    "render_page",
    "report_published",
    "report_store",
    "validate_page_data",
]
