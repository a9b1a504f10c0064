"""`thoughtlens sae store-features SAE STORE`: the feature panel's data written for a run; bad input is one red line."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from thoughtlens.cli import app
from thoughtlens.report.synthetic import synthetic_store
from thoughtlens.sae import build_sae, save_sae
from thoughtlens.store.run_store import RunStore


@pytest.fixture()
def sae_dir(tmp_path):
    torch.manual_seed(0)
    sae = build_sae(architecture="topk", d_in=32, d_sae=64, k=4, hook_name="blocks.1.hook_resid_post")
    return str(save_sae(sae, tmp_path / "sae"))


def _one_error_line(res) -> str:
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    return lines[0]


def test_store_features_writes_the_panel_data(tiny_lm_dir, sae_dir, tmp_path):
    store, run_id, pid = synthetic_store(tmp_path / "run.sqlite", 5)
    store.close()
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({str(i): f"label {i}" for i in range(0, 64, 2)}))  # even latents only
    res = CliRunner().invoke(
        app,
        [
            "sae",
            "store-features",
            sae_dir,
            str(tmp_path / "run.sqlite"),
            "--model",
            tiny_lm_dir,
            "--top",
            "3",
            "--top-sentences",
            "2",
            "--tokens",
            "2",
            "--labels",
            str(labels),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "stored SAE features of 1 trace" in res.output
    with RunStore(tmp_path / "run.sqlite") as s:
        rows = s.get_artifact(run_id, "sae_sentence_features", pid)["sentences"]
        table = s.get_artifact(run_id, "sae_feature_table")
    assert len(rows) == 5 and all(0 < len(r) <= 3 for r in rows)
    assert all(len(f["top_sentences"]) <= 2 and len(f["up"]) == 2 for f in table["features"].values())
    assert all(f["label"] == (f"label {k}" if int(k) % 2 == 0 else None) for k, f in table["features"].items())


def test_store_features_bad_input(tiny_lm_dir, sae_dir, tmp_path):
    runner = CliRunner()
    line = _one_error_line(
        runner.invoke(app, ["sae", "store-features", sae_dir, str(tmp_path / "none.sqlite"), "--model", tiny_lm_dir])
    )
    assert "no run store" in line and not (tmp_path / "none.sqlite").exists()
    bad = tmp_path / "labels.json"
    bad.write_text("[1, 2]")
    line = _one_error_line(
        runner.invoke(app, ["sae", "store-features", sae_dir, str(tmp_path / "none.sqlite"), "--labels", str(bad)])
    )
    assert "cannot read labels" in line
