"""Headless Chromium for the report's browser tests (Debian's `chromium`, driven by Playwright): the `browser`
fixture and `Loaded`, a page opened from a file with everything it logged, requested or tried to show.
Imported by name by tests/report/test_report_*browser.py (`from report_browser import ...`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
EVIL = '<script>alert(1)</script> </script> "quoted" {{ 7*7 }} <img src=x onerror=alert(2)>'


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"chromium not found at {CHROMIUM}: install it with `make browser` (Debian package chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright missing: pip install -e '.[test]'")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Loaded:
    """A page opened from a file, with everything it logged, requested or tried to show."""

    def __init__(self, browser, html_path: Path):
        self.errors, self.requests, self.dialogs = [], [], []
        self.page = browser.new_page(viewport={"width": 1500, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.url = html_path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready]", timeout=10_000)

    def radii(self) -> list[float]:
        return self.page.eval_on_selector_all("circle.node", "cs => cs.map(c => Number(c.getAttribute('r')))")
