"""Diffing defaults that measure something: the crosscoder's default layer is one the fine-tune changed (and a
layer below every change gets a note naming the fix), and `--base` defaults to the bundled model ('bundled' too)."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_FIRST_TRAINABLE
from typer.testing import CliRunner

from thoughtlens.cli import app
from thoughtlens.errors import ConfigError


def _layer_fns():
    from thoughtlens.diff.crosscoder import default_layer
    from thoughtlens.diff.weight_diff import first_changed_layer

    return default_layer, first_changed_layer


def test_default_layer_is_the_middle_unless_the_fine_tune_froze_it():
    default_layer, _ = _layer_fns()
    assert default_layer(30, 20) == 24  # the planted pair: layers 20-29 trained
    assert default_layer(30, 0) == default_layer(30, None) == default_layer(30, 15) == 15
    assert default_layer(3, TINY_FIRST_TRAINABLE) == 1
    assert default_layer(4, 3) == 3


def test_first_changed_layer_reads_the_weights(tiny_planted_pair):
    _, first_changed_layer = _layer_fns()
    base, ft = tiny_planted_pair.models()
    assert first_changed_layer(base, ft) == TINY_FIRST_TRAINABLE
    assert first_changed_layer(base, base) is None
    edited = base.copy(untie_embeddings=True)
    with torch.no_grad():
        edited.hf_model.model.layers[2].mlp.down_proj.weight[0, 0] += 1.0
    assert first_changed_layer(base, edited) == 2
    with torch.no_grad():
        edited.hf_model.model.embed_tokens.weight[5, 0] += 1.0
    assert first_changed_layer(base, edited) == 0


def _hook_chosen(monkeypatch, base, finetuned, **kw) -> tuple[str, list]:
    """The hook train_crosscoder picks (training itself replaced by a stub) and the notes it sends."""
    from thoughtlens.diff import crosscoder

    chosen, events = {}, []
    monkeypatch.setattr(crosscoder, "_train", lambda a, b, texts, hook, *args, **k: chosen.update(hook=hook))
    crosscoder.train_crosscoder(base, finetuned, ["some words here and there"] * 4, on_progress=events.append, **kw)
    return chosen["hook"], [e.note for e in events if e.note]


def test_crosscoder_defaults_to_a_layer_the_fine_tune_changed(tiny_planted_pair, monkeypatch):
    base, _ = tiny_planted_pair.models()
    frozen_low = base.copy(untie_embeddings=True)  # only the last layer differs: the middle layer (1) is frozen
    with torch.no_grad():
        frozen_low.hf_model.model.layers[2].mlp.down_proj.weight.mul_(1.5)
    hook, notes = _hook_chosen(monkeypatch, base, frozen_low)
    assert hook == "blocks.2.hook_resid_post" and notes == []
    hook, notes = _hook_chosen(monkeypatch, *tiny_planted_pair.models())  # trained from layer 1: the middle
    assert hook == "blocks.1.hook_resid_post" and notes == []


def test_a_crosscoder_layer_below_every_change_gets_a_note_naming_the_fix(tiny_planted_pair, monkeypatch):
    hook, notes = _hook_chosen(monkeypatch, *tiny_planted_pair.models(), layer=0)
    assert hook == "blocks.0.hook_resid_post"  # an explicit choice is kept ...
    assert len(notes) == 1 and "identical" in notes[0] and f"pick a layer >= {TINY_FIRST_TRAINABLE}" in notes[0]
    base, _ = tiny_planted_pair.models()
    _, notes = _hook_chosen(monkeypatch, base, base)
    assert len(notes) == 1 and "identical everywhere" in notes[0]


def test_the_note_reaches_the_command_line(tiny_planted_dirs, tmp_path):
    base, ft = tiny_planted_dirs
    corpus = tmp_path / "c.txt"
    corpus.write_text("a few words")  # too short to train on: the run stops right after the checks
    res = CliRunner().invoke(
        app,
        [
            "diff",
            "crosscoder",
            "--base",
            base,
            "--finetuned",
            ft,
            "--layer",
            "0",
            "--corpus",
            str(corpus),
            "-o",
            str(tmp_path / "cc"),
        ],
    )
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "layer 0: the two models' weights at and below it are identical" in text, res.output
    assert "error:" in text


def _load_pair_args(monkeypatch, args: list[str]) -> tuple:
    """What `thoughtlens diff kl ARGS` passes to load_pair (stopped there)."""
    from thoughtlens.diff import pair

    seen = []

    def fake(base, finetuned, *a, **k):
        seen.append((str(base), str(finetuned)))
        raise ConfigError("stopped here")

    monkeypatch.setattr(pair, "load_pair", fake)
    res = CliRunner().invoke(app, ["diff", "kl", *args, "--corpus", "neutral", "--limit", "1"])
    assert res.exit_code == 1 and "stopped here" in res.output, res.output
    return seen[0]


def test_base_defaults_to_the_bundled_model(tiny_planted_dirs, monkeypatch):
    from thoughtlens.diff.models import base_dir

    _, ft = tiny_planted_dirs
    assert _load_pair_args(monkeypatch, ["--finetuned", ft]) == (base_dir(), ft)
    assert _load_pair_args(monkeypatch, ["--base", "bundled", "--finetuned", ft]) == (base_dir(), ft)
    assert _load_pair_args(monkeypatch, ["--base", "/some/dir", "--finetuned", ft]) == ("/some/dir", ft)


def test_base_alone_still_needs_a_fine_tune(tmp_path):
    res = CliRunner().invoke(app, ["diff", "kl", "--base", str(tmp_path)])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--finetuned" in lines[0]


@pytest.mark.slow
def test_planted_pair_defaults(real_planted_pair, monkeypatch):
    """The real planted pair (when built): layers 20-29 trained, so the crosscoder defaults to layer 24, and
    `diff kl --finetuned DIR` compares it with the bundled model."""
    from thoughtlens.diff import models

    default_layer, first_changed_layer = _layer_fns()
    base, ft = real_planted_pair.models()
    assert first_changed_layer(base, ft) == models.PLANTED.first_trainable_layer == 20
    hook, notes = _hook_chosen(monkeypatch, base, ft)
    assert hook == "blocks.24.hook_resid_post" and notes == []
    res = CliRunner().invoke(
        app,
        [
            "diff",
            "kl",
            "--finetuned",
            str(models.finetuned_dir(models.PLANTED)),
            "--limit",
            "2",
            "--max-len",
            "32",
            "--top",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "largest KL" in res.output
