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
    acts = SentenceActivations(
        ["blocks.0.hook_resid_post"],
        {"mean": X[None].astype(np.float32)},
        pd.DataFrame({"category": labels, "trace_id": [f"p{i % 6}" for i in range(n)], "text": ["w"] * n}),
    )
    path = tmp_path / f"{name}.npz"
    acts.to_npz(path)
    return str(path)


def test_commands_are_mounted():
    out = CliRunner().invoke(app, ["represent", "--help"])
    assert out.exit_code == 0
    for cmd in ("directions", "probe", "steer", "ablate"):
        assert cmd in out.output


def _layered_acts(tmp_path) -> tuple[str, SentenceActivations]:
    """Three layers: the label shifts layer 0 strongly, layer 1 weakly, layer 3 not at all; texts start with
    varied first words (the control task's surface types)."""
    rng = np.random.default_rng(1)
    n = 72
    labels = np.array(["a", "b"] * (n // 2))
    shift = np.where(labels == "b", 1.0, 0.0)[None, :, None] * np.array([3.0, 0.6, 0.0])[:, None, None]
    X = (rng.normal(size=(3, n, 8)) + shift).astype(np.float32)
    words = rng.choice(["So", "Wait", "Let", "Then"], size=n)
    acts = SentenceActivations(
        [f"blocks.{L}.hook_resid_post" for L in (0, 1, 3)],
        {"mean": X},
        pd.DataFrame(
            {"category": labels, "trace_id": [f"p{i % 6}" for i in range(n)], "text": [f"{w} x." for w in words]}
        ),
    )
    path = tmp_path / "layered.npz"
    acts.to_npz(path)
    return str(path), acts


def _table_rows(output: str) -> tuple[list[str], list[list[str]]]:
    """(header, body rows) of the rich table in `output`, cells stripped."""
    lines = [line for line in output.splitlines() if line.startswith(("┃", "│"))]
    cells = [[cell.strip() for cell in line.strip("┃│").replace("┃", "│").split("│")] for line in lines]
    return cells[0], cells[1:]


def test_probe_prints_a_layer_table(tmp_path):
    from thoughtlens.represent.probes import layer_sweep

    path, acts = _layered_acts(tmp_path)
    out = CliRunner().invoke(app, ["represent", "probe", path, "--splits", "3", "--control", "--layers", "3,0"])
    assert out.exit_code == 0, out.output
    header, rows = _table_rows(out.output)
    assert header == ["layer", "accuracy", "95% CI", "AUROC", "control", "selectivity"]

    meta = acts.meta
    sweep = layer_sweep(
        acts, meta["category"].to_numpy(), meta["trace_id"].to_numpy(), layers=[3, 0], control=True, n_splits=3
    )
    want = [
        [
            str(r.layer),
            f"{r.score:.3f}",
            f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}]",
            f"{r.auroc:.3f}",
            f"{r.control_score:.3f}",
            f"{r.selectivity:.3f}",
        ]
        for r in sweep.rows
    ]
    assert rows == want
    # the rows are the layers asked for, in that order, and tell the informative layer from the empty one
    by_layer = {int(r[0]): float(r[1]) for r in rows}
    assert list(by_layer) == [3, 0] and by_layer[0] > 0.9 and by_layer[3] < 0.75


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
