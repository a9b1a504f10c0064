"""Screenshot a report page in headless Chromium (for docs/demo.png and docs/report.png).

.venv/bin/python scripts/screenshot_page.py runs/demo.html docs/demo.png
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def main(page_path: str, png: str, width: int = 1400, height: int = 1000) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(Path(page_path).resolve().as_uri())
        page.wait_for_timeout(500)
        first = page.locator("#tl-graph circle").nth(3)  # select a sentence so the panel shows its data
        if first.count():
            first.click()
            page.mouse.move(5, 5)  # no tooltip over the graph
        page.screenshot(path=png, full_page=False)
        browser.close()
    print(f"wrote {png}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
