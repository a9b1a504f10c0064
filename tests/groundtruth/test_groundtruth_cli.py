"""`thoughtlens ground-truth ...`: one red error line on bad input, and a tiny grokking run end to end."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from thoughtlens.cli import app


def test_bench_anchors_missing_model_is_one_error_line(tmp_path):
    result = CliRunner().invoke(app, ["ground-truth", "bench-anchors", "--model", str(tmp_path / "nope"),
                                      "--store", str(tmp_path / "s.sqlite"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "train it first" in lines[0]


@pytest.mark.slow
def test_grokking_command_writes_measures_and_plot(tmp_path):
    out = tmp_path / "grok"
    result = CliRunner().invoke(app, ["ground-truth", "grokking", "--out", str(out), "--steps", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "key frequencies" in result.output
    assert (out / "progress.png").stat().st_size > 1000 and len((out / "measures.csv").read_text().splitlines()) == 4
