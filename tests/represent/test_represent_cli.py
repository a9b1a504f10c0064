"""`thoughtlens represent ...`: commands are mounted, run the probe sweep, and fail with one red line."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from thoughtlens.cli import app
from thoughtlens.represent.sentence_activations import SentenceActivations


def _acts(tmp_path, labels, name: str = "acts") -> str:
    rng = np.random.default_rng(0)
    n = len(labels)
    X = rng.normal(size=(n, 8)) + np.where(np.array(labels) == "b", 3.0, 0.0)[:, None]
    acts = SentenceActivations(["blocks.0.hook_resid_post"], {"mean": X[None].astype(np.float32)},
                               pd.DataFrame({"category": labels, "trace_id": [f"p{i % 6}" for i in range(n)],
                                             "text": ["w"] * n}))
    path = tmp_path / f"{name}.npz"
    acts.to_npz(path)
    return str(path)


def test_commands_are_mounted():
    out = CliRunner().invoke(app, ["represent", "--help"])
    assert out.exit_code == 0
    for cmd in ("directions", "probe", "steer", "ablate"):
        assert cmd in out.output


def test_probe_prints_a_layer_table(tmp_path):
    path = _acts(tmp_path, ["a", "b"] * 30)
    out = CliRunner().invoke(app, ["represent", "probe", path, "--splits", "3"])
    assert out.exit_code == 0, out.output
    assert "accuracy" in out.output and "0" in out.output


def test_bad_input_is_one_red_line(tmp_path):
    runner = CliRunner()
    cases = [
        (["represent", "probe", str(tmp_path / "missing.npz")], "not found"),
        (["represent", "probe", _acts(tmp_path, ["a"] * 12, "one_class")], "one class"),
        (["represent", "probe", _acts(tmp_path, ["a", "b"] * 6), "--target", "nope"], "column 'nope'"),
        (["represent", "probe", _acts(tmp_path, ["a", "b"] * 6), "--layers", "3"], "layer 3 is not among"),
        (["represent", "steer", "hi", "--direction", str(tmp_path / "none.safetensors")], "not found"),
    ]
    for argv, match in cases:
        out = runner.invoke(app, argv)
        assert out.exit_code == 1, (argv, out.output)
        lines = [line for line in out.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], (argv, out.output)
