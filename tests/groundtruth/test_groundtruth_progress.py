"""Ground-truth training commands: a short run is short (the second phase follows the options), training
runs where --device says, and progress (step, loss, ETA) shows while it runs, also when piped."""

from __future__ import annotations

import io
import json
import re

import pytest
from typer.testing import CliRunner

from thoughtlens.cli import app
from thoughtlens.groundtruth.toy_model import ToyFinetuneConfig, ToyModelConfig, train_toy_model
from thoughtlens.progress import line_printer

TINY = ToyModelConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, max_positions=256)


def test_the_second_phase_follows_the_first_phases_options():
    assert ToyFinetuneConfig().resolved(4000, 32, 3e-3) == ToyFinetuneConfig(
        steps=300, lr=pytest.approx(1e-3), warmup=30, batch_size=32
    )
    short = ToyFinetuneConfig().resolved(20, 8, 6e-3)
    assert (short.steps, short.warmup, short.batch_size, short.lr) == (2, 0, 8, pytest.approx(2e-3))
    assert ToyFinetuneConfig().resolved(3, 4, 1e-3).steps == 1  # never zero steps
    given = ToyFinetuneConfig(steps=7, lr=1e-4, warmup=2, batch_size=5).resolved(4000, 32, 3e-3)
    assert (given.steps, given.lr, given.warmup, given.batch_size) == (7, 1e-4, 2, 5)  # set fields are kept


@pytest.mark.slow
def test_a_short_run_has_a_short_second_phase(tmp_path):
    records = []
    final = train_toy_model(
        tmp_path / "toy", seed=0, steps=3, batch_size=4, model_config=TINY, on_progress=records.append
    )
    assert final.is_dir()
    log = [json.loads(line) for line in (tmp_path / "toy" / "finetune" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 1  # 7.5 % of 3 steps, at least one
    assert {(r["phase"], r["total"]) for r in records} == {(1, 3), (2, 1)}


def test_trainer_records_become_progress_lines_with_step_loss_and_eta():
    from thoughtlens.train.trainer import progress_events

    out = io.StringIO()
    send = progress_events(line_printer(every_s=0.0, stream=out), "training", "grokking")
    for step in (10, 20):
        send({"step": step, "loss": 0.5 / step, "lr": 1e-3, "seconds": step * 0.1, "total": 40})
    send({"step": 40, "loss": 0.01, "lr": 1e-3, "seconds": 4.0, "total": 40, "phase": 2})
    lines = out.getvalue().splitlines()
    assert lines[0] == "grokking (loss 0.05): 10/40, 1 s, ETA 3 s"
    assert lines[1] == "grokking (loss 0.025): 20/40, 2 s, ETA 2 s"
    assert lines[2] == "grokking phase 2 (loss 0.01): 40/40, 4 s"


@pytest.mark.slow
def test_train_toy_takes_a_device_and_shows_progress_when_piped(tmp_path):
    out = tmp_path / "toy"
    res = CliRunner().invoke(
        app,
        [
            "ground-truth",
            "train-toy",
            "--out",
            str(out),
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--eval-n",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert re.search(r"training toy phase 1 \(loss [0-9.e+-]+\): 3/3", res.output), res.output
    assert re.search(r"training toy phase 2 \(loss [0-9.e+-]+\): 1/1", res.output), res.output
    assert "held-out chains" in res.output


def test_train_toy_refuses_an_unknown_device_in_one_line(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "ground-truth",
            "train-toy",
            "--out",
            str(tmp_path / "toy"),
            "--steps",
            "3",
            "--device",
            "nonsense",
            "--threads",
            "1",
        ],
    )
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--device" in lines[0], res.output


@pytest.mark.slow
def test_grokking_shows_step_loss_and_eta_when_piped_and_says_never_reached(tmp_path):
    res = CliRunner().invoke(
        app, ["ground-truth", "grokking", "--out", str(tmp_path / "grok"), "--steps", "3", "--threads", "1"]
    )
    assert res.exit_code == 0, res.output
    assert re.search(r"grokking \(loss [0-9.e+-]+\): 1/3, \d+ s, ETA \d+ s", res.output), res.output
    assert re.search(r"grokking \(loss [0-9.e+-]+\): 3/3, \d+ s", res.output), res.output
    assert "progress measures: 3/3" in res.output
    text = " ".join(res.output.split())
    assert "test acc >= 99% never reached" in text and "None" not in text
