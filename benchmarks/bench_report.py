"""Benchmark: how fast a 300-sentence report page renders in headless Chromium.

Figures: time from navigation start until the page script has drawn every view (`data-ready-ms`,
measured inside the page), and the wall time of goto + wait as seen from Python; median of REPEATS.
Baselines measured in the same run: an empty page and a 30-sentence page with the same views.
The issue's target: 300 sentences render in under 2 s.

    .venv/bin/python benchmarks/bench_report.py
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from thoughtlens.report import ReportPage, page_data_from_store
from thoughtlens.report.synthetic import synthetic_store

REPEATS = 5
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
EMPTY = (
    "<!DOCTYPE html><html><body><script>"
    "document.body.setAttribute('data-ready-ms', performance.now().toFixed(1));"
    "document.body.setAttribute('data-ready','1')"
    "</script></body></html>"
)


def build_page(tmp: Path, n_sentences: int) -> tuple[Path, float]:
    """A page for a synthetic trace with every view filled; returns (path, Python build seconds)."""
    store, _, _ = synthetic_store(tmp / f"run{n_sentences}.sqlite", n_sentences, seed=0)
    t0 = time.perf_counter()
    page = ReportPage(page_data_from_store(store, similarity=False))
    path = page.save(tmp / f"page{n_sentences}.html")
    store.close()
    return path, time.perf_counter() - t0


def measure(browser, path: Path) -> tuple[float, float]:
    """Median (in-page ms to ready, wall ms of goto + wait) over REPEATS fresh pages."""
    inside, wall = [], []
    for _ in range(REPEATS):
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        t0 = time.perf_counter()
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("body[data-ready]", state="attached")
        wall.append(1000 * (time.perf_counter() - t0))
        inside.append(float(page.get_attribute("body", "data-ready-ms")))
        page.close()
    return statistics.median(inside), statistics.median(wall)


def main() -> int:
    if not Path(CHROMIUM).is_file():
        print(f"skipped: chromium not found at {CHROMIUM} (make browser)")
        return 0
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "empty.html").write_text(EMPTY)
        pages = {"empty page": (tmp / "empty.html", 0.0)}
        for n in (30, 300):
            pages[f"{n} sentences"] = build_page(tmp, n)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            results = {name: measure(browser, path) for name, (path, _) in pages.items()}
            browser.close()
        print(f"report page render in headless Chromium (median of {REPEATS}; 2 shared CPU cores)")
        print(f"{'page':<14}{'size MB':>9}{'build s':>9}{'ready ms':>10}{'wall ms':>9}")
        for name, (path, build_s) in pages.items():
            inside, wall = results[name]
            print(f"{name:<14}{path.stat().st_size / 1e6:>9.2f}{build_s:>9.2f}{inside:>10.0f}{wall:>9.0f}")
        r300, r30, r0 = results["300 sentences"][0], results["30 sentences"][0], results["empty page"][0]
        print(
            f"300-sentence ready time: {r300:.0f} ms (target < 2000 ms); "
            f"{r300 / r30:.1f}x the 30-sentence page, {r300 / r0:.1f}x an empty page"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
