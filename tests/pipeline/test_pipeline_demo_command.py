"""The README's first command, run for real in CI: `thoughtlens demo` (what `make demo` runs) with its
default budget ends with exit 0, the paths of the store and the page, and a page whose sentences carry
importance values. Kept as one slow test so that the demo can never again fail unnoticed (issue 10)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from thoughtlens.pipeline.demo import demo_record


@pytest.mark.slow
def test_demo_command_succeeds_with_a_page(tmp_path):
    store, page = tmp_path / "demo.sqlite", tmp_path / "demo.html"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "thoughtlens.cli", "demo", "--store", str(store), "-o", str(page)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"page: {page.resolve()}" in proc.stderr.replace("\n", "")
    assert "results:" in proc.stderr
    assert "FutureWarning" not in proc.stderr and "Loading weights" not in proc.stderr, "third-party chatter leaked"
    data = json.loads(re.search(r'id="tl-data">(.*?)</script>', page.read_text(), re.S).group(1))
    assert data["trace"]["text"] == demo_record()["completion"]
    values = [s["metrics"].get("resampling_importance_kl") for s in data["sentences"]]
    assert any(v is not None for v in values), "the page must show importance values"
