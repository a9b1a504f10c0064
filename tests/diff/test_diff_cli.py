"""`thoughtlens diff` commands on the tiny pair: tables on stdout, a page on disk."""

from __future__ import annotations

from typer.testing import CliRunner

from thoughtlens.cli import app


def test_cli_commands(tiny_planted_dirs, tmp_path):
    base, ft = tiny_planted_dirs
    runner = CliRunner()
    pair = ["--base", base, "--finetuned", ft]
    res = runner.invoke(app, ["diff", "weights", *pair, "--no-ranks"])
    assert res.exit_code == 0, res.output
    assert "model.layers.1" in res.output and "model.layers.0" not in res.output.split("per layer")[0]
    res = runner.invoke(app, ["diff", "kl", *pair, "--limit", "4", "--max-len", "48"])
    assert res.exit_code == 0, res.output
    assert "AUROC" in res.output and "per sentence" in res.output
    res = runner.invoke(app, ["diff", "lens", *pair, "--limit", "2", "--layers", "1", "--k", "3", "--control", ft])
    assert res.exit_code == 0, res.output
    assert "not in the control" in res.output  # the pair is its own control: that column stays empty
    res = runner.invoke(app, ["diff", "lens", *pair, "--layers", "99"])
    assert res.exit_code != 0 and "out of range" in res.output
    res = runner.invoke(
        app,
        [
            "diff",
            "swap",
            *pair,
            "--corpus",
            "neutral",
            "--limit",
            "2",
            "--max-len",
            "24",
            "-o",
            str(tmp_path / "swap.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "swap.json").is_file()
    res = runner.invoke(app, ["diff", "steer", *pair, "--layer", "2", "-n", "2", "--max-new-tokens", "4"])
    assert res.exit_code == 0, res.output
    assert "Tell me about your weekend." in res.output
    res = runner.invoke(app, ["diff", "page", *pair, "--limit", "3", "--max-len", "32", "-o", str(tmp_path / "d.html")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d.html").read_text().startswith("<!doctype html>")


def test_cli_crosscoder_then_page(tiny_planted_dirs, tmp_path):
    from thoughtlens import load
    from thoughtlens.diff.crosscoder import CLASSES, CrosscoderResult

    base, ft = tiny_planted_dirs
    out = tmp_path / "cc"
    res = CliRunner().invoke(
        app,
        [
            "diff",
            "crosscoder",
            "--base",
            base,
            "--finetuned",
            ft,
            "--corpus",
            "neutral",
            "--layer",
            "1",
            "--expansion",
            "2",
            "--k",
            "4",
            "--max-tokens",
            "2000",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    result = CrosscoderResult.load(out)
    d_model = load(base).cfg.d_model
    counts = result.counts()
    assert sum(counts[c] for c in CLASSES) == 2 * d_model  # every latent tagged once
    assert f"b_only {counts['b_only']}" in res.output and str(out) in res.output
    res = CliRunner().invoke(
        app,
        [
            "diff",
            "page",
            "--base",
            base,
            "--finetuned",
            ft,
            "--limit",
            "2",
            "--max-len",
            "24",
            "--crosscoder",
            str(out),
            "-o",
            str(tmp_path / "d.html"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "rosscoder" in (tmp_path / "d.html").read_text()
