"""`thoughtlens sae train|eval|features` end to end on a tiny model; bad input is one red line, exit 1."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from thoughtlens.cli import app


@pytest.mark.slow
def test_sae_train_eval_features(tiny_lm_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n\n".join(f"Step {i}: add {i} and {i + 1} to get {2 * i + 1}. Then check it." for i in range(60))
    )
    out = tmp_path / "sae"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "sae",
            "train",
            "--model",
            tiny_lm_dir,
            "--hook",
            "blocks.1.hook_resid_post",
            "--corpus",
            str(corpus),
            "--tokens",
            "512",
            "--batch-size",
            "64",
            "--expansion",
            "2",
            "--k",
            "4",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"], cfg["k"]) == ("topk", 32, 64, 4)
    res = runner.invoke(
        app, ["sae", "eval", str(out), "--model", tiny_lm_dir, "--corpus", str(corpus), "--tokens", "256"]
    )
    assert res.exit_code == 0, res.output
    assert "CE recovered" in res.output
    res = runner.invoke(
        app,
        [
            "sae",
            "features",
            str(out),
            "--model",
            tiny_lm_dir,
            "--prompt",
            "Add 2 and 3. ",
            "--completion",
            "First, 2 plus 3 is 5. So the answer is 5.",
            "--feature",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "logit effects" in res.output


def test_sae_eval_refuses_a_pickle(tiny_lm_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"W_enc": torch.zeros(2, 2)}, bad / "sae_weights.safetensors")
    (bad / "cfg.json").write_text("{}")
    res = CliRunner().invoke(app, ["sae", "eval", str(bad), "--model", tiny_lm_dir])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "never unpickles" in lines[0]
