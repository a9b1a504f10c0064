"""The anchors job with an adaptive budget on a tiny model: rounds stored, CIs stored, the default
unchanged, and a run interrupted (or killed with SIGKILL) mid-round resumes with no rollout lost or
duplicated and the same rollouts as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict

import pytest

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun, answer_complete
from thoughtlens.anchors.importance.budget import BudgetPolicy
from thoughtlens.sample.base import Completion
from thoughtlens.sample.hf import HFSampler
from thoughtlens.store.run_store import RunStore

TRACE = "First, we add three and five to get eight. Then we subtract two. So the answer is \\boxed{6}."
PROMPT = "Question: what is 3 + 5 - 2? Answer step by step.\n"
CONFIG = AnchorsConfig(
    n_rollouts=4,
    max_new_tokens=6,
    forced_max_new_tokens=3,
    temperature=1.0,
    seed=3,
    label_categories=False,
    counterfactual_matrix=False,
)
BUDGET = BudgetPolicy("sequential", initial=2, step=1)  # tiny random model: nothing settles, rounds 2 -> 3 -> 4
KEY = ["problem_id", "sentence_index", "condition", "sample_index"]


def _problem():
    return Problem("p0", "what is 3 + 5 - 2?", PROMPT, "6", base_completion=TRACE)


def _job(tiny_lm, store, budget=BUDGET):
    return AnchorsRun(HFSampler(tiny_lm, batch_size=2, answer_done=answer_complete), store, CONFIG, budget=budget)


@pytest.mark.slow
def test_adaptive_run_stores_rounds_counts_and_cis_and_resumes_mid_round(tiny_lm, tmp_path):
    full = RunStore(tmp_path / "full.sqlite")
    job = _job(tiny_lm, full)
    job.run([_problem()])
    rounds = full.get_artifact(job.run_id, "budget_rounds", "p0")
    n_pos = len(rounds[0])
    assert rounds == [[2] * n_pos, [3] * n_pos, [4] * n_pos]
    df = full.rollouts(job.run_id)
    assert not df.duplicated(KEY).any() and len(df) == n_pos * 4 * 2  # resampled + forced, at the same counts
    m = full.metrics(job.run_id, "p0")
    assert (m["resampling_importance_accuracy_ci_low"] <= m["resampling_importance_accuracy"]).all()
    assert (m["resampling_importance_accuracy"] <= m["resampling_importance_accuracy_ci_high"]).all()
    assert json.loads(json.dumps(BUDGET.record())) == full.runs()[0]["config"]["budget"]
    assert job.run_id != CONFIG.run_id()  # an adaptive run never resumes a fixed one

    # Interrupt in the middle of round 2 (the first round has 2 * n_pos rollouts), then resume.
    part = RunStore(tmp_path / "part.sqlite")
    sampler = HFSampler(tiny_lm, batch_size=2, answer_done=answer_complete)
    original, count = sampler.sample, {"n": 0}
    stop_at = 2 * n_pos + 1

    def flaky(requests, params, on_completion=None):
        def cb(c: Completion):
            on_completion(c)
            count["n"] += 1
            if count["n"] == stop_at:
                raise KeyboardInterrupt

        return original(requests, params, cb)

    sampler.sample = flaky
    with pytest.raises(KeyboardInterrupt):
        AnchorsRun(sampler, part, CONFIG, budget=BUDGET).run([_problem()])
    assert len(part.rollouts(job.run_id)) == stop_at
    resumed = _job(tiny_lm, part)
    assert resumed.resumed
    resumed.run([_problem()])
    a = full.rollouts(job.run_id).drop(columns=["created_at"])
    b = part.rollouts(job.run_id).drop(columns=["created_at"])
    assert a.equals(b)
    assert part.get_artifact(job.run_id, "budget_rounds", "p0") == rounds


def test_default_budget_keeps_the_run_id_and_stored_config(tiny_lm, tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    job = _job(tiny_lm, store, budget=None)
    assert job.run_id == CONFIG.run_id()
    assert "budget" not in store.runs()[0]["config"]


_SCRIPT = """
import sys, torch
from thoughtlens import load
from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun, answer_complete
from thoughtlens.anchors.importance.budget import BudgetPolicy
from thoughtlens.sample.hf import HFSampler
from thoughtlens.store.run_store import RunStore
cfg = AnchorsConfig(**{cfg})
job = AnchorsRun(HFSampler(load(sys.argv[1], dtype=torch.float32), batch_size=2, answer_done=answer_complete),
                 RunStore(sys.argv[2]), cfg, budget=BudgetPolicy(**{budget}))
job.run([Problem("p0", "what is 3 + 5 - 2?", {prompt!r}, "6", base_completion={trace!r})])
"""


def _count(path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as con:
            return con.execute("SELECT count(*) FROM rollouts").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_adaptive_run_killed_mid_round_resumes_without_loss_or_duplicates(tiny_lm, tiny_lm_dir, tmp_path):
    script = _SCRIPT.format(cfg=repr(asdict(CONFIG)), budget=repr(asdict(BUDGET)), prompt=PROMPT, trace=TRACE)
    ref = RunStore(tmp_path / "ref.sqlite")
    job = _job(tiny_lm, ref)
    job.run([_problem()])
    n_pos = len(ref.get_artifact(job.run_id, "budget_rounds", "p0")[0])
    killed = tmp_path / "killed.sqlite"
    stop_at = 2 * n_pos + 3  # inside round 2
    proc = subprocess.Popen(
        [sys.executable, "-c", script, tiny_lm_dir, str(killed)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while _count(killed) < stop_at and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 0 < _count(killed) < len(ref.rollouts(job.run_id)), "the run finished before it could be killed"
    store = RunStore(killed)
    _job(tiny_lm, store).run([_problem()])
    a = ref.rollouts(job.run_id).drop(columns=["created_at"])
    b = store.rollouts(job.run_id).drop(columns=["created_at"])
    assert not b.duplicated(KEY).any() and len(a) == len(b)
    assert a[KEY].equals(b[KEY])
    assert a.equals(b)  # fixed seed: the same rollouts as the uninterrupted run
