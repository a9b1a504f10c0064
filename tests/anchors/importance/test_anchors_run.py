"""The black-box anchors job end to end on a tiny model: store contents, resume, kill -9, bad input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numerics
import numpy as np
import pandas as pd
import pytest
import torch

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun, answer_complete, prefixes
from thoughtlens.errors import ConfigError, StoreError, TraceError
from thoughtlens.sample.base import Completion
from thoughtlens.sample.hf import HFSampler
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.reasoning_trace import ReasoningTrace

TRACE = (
    "First, we add three and five to get eight. Then we subtract two, which gives six. "
    "Let me double check: 3 + 5 = 8, and 8 - 2 = 6. So the answer is \\boxed{6}."
)
PROMPT = "Question: what is 3 + 5 - 2? Answer step by step.\n"
CONFIG = AnchorsConfig(n_rollouts=4, max_new_tokens=8, forced_max_new_tokens=4, temperature=1.0, seed=3)


def _problem():
    return Problem("p0", "what is 3 + 5 - 2?", PROMPT, "6", base_completion=TRACE)


def _run(tiny_lm, path, config=CONFIG, run_id=None):
    store = RunStore(path)
    job = AnchorsRun(HFSampler(tiny_lm, batch_size=2, answer_done=answer_complete), store, config, run_id)
    job.run([_problem()])
    return store, job


def test_run_stores_every_rollout_once_and_metrics_per_sentence(tiny_lm, tmp_path):
    store, job = _run(tiny_lm, tmp_path / "s.sqlite")
    n_sent = len(ReasoningTrace.parse(PROMPT, TRACE).sentences)
    df = store.rollouts(job.run_id)
    assert len(df) == (n_sent + 1) * 4 * 2  # resampled + forced, positions 0..n
    assert not df.duplicated(["problem_id", "sentence_index", "condition", "sample_index"]).any()
    metrics = store.metrics(job.run_id, "p0")
    assert list(metrics["sentence_index"]) == list(range(n_sent))
    assert metrics["n_rollouts"].eq(4).all()
    assert store.trace(job.run_id, "p0")["answer"] == "6"
    assert store.get_artifact(job.run_id, "regeneration_curve", "p0")[-1]["k"] == n_sent


def test_resumed_run_equals_uninterrupted_run(tiny_lm, tmp_path):
    full_store, job = _run(tiny_lm, tmp_path / "full.sqlite")
    # Interrupt after 7 rollouts (mid-batch), then resume with the same config.
    store = RunStore(tmp_path / "part.sqlite")
    sampler = HFSampler(tiny_lm, batch_size=2, answer_done=answer_complete)
    original = sampler.sample
    count = {"n": 0}

    def flaky(requests, params, on_completion=None):
        def cb(c: Completion):
            on_completion(c)
            count["n"] += 1
            if count["n"] == 7:
                raise KeyboardInterrupt

        return original(requests, params, cb)

    sampler.sample = flaky
    with pytest.raises(KeyboardInterrupt):
        AnchorsRun(sampler, store, CONFIG).run([_problem()])
    assert len(store.rollouts(CONFIG.run_id())) == 7
    resumed = AnchorsRun(HFSampler(tiny_lm, batch_size=2, answer_done=answer_complete), store, CONFIG)
    assert resumed.resumed
    resumed.run([_problem()])
    a = full_store.rollouts(job.run_id).drop(columns=["created_at"])
    b = store.rollouts(CONFIG.run_id()).drop(columns=["created_at"])
    assert a.equals(b)
    assert full_store.metrics(job.run_id).equals(store.metrics(CONFIG.run_id()))


def test_resuming_with_different_settings_is_refused(tiny_lm, tmp_path):
    store, job = _run(tiny_lm, tmp_path / "s.sqlite")
    other = AnchorsConfig(n_rollouts=5, max_new_tokens=8)
    with pytest.raises(StoreError, match="n_rollouts"):
        AnchorsRun(HFSampler(tiny_lm), store, other, run_id=job.run_id)


def test_a_model_that_never_answers_is_recorded_not_dropped(tiny_lm, tmp_path):
    store, job = _run(tiny_lm, tmp_path / "s.sqlite", AnchorsConfig(n_rollouts=2, max_new_tokens=3, forced=False))
    df = store.rollouts(job.run_id)
    assert df["answer"].isna().all() and len(df) == (len(ReasoningTrace.parse(PROMPT, TRACE)) + 1) * 2
    assert store.metrics(job.run_id)["accuracy"].eq(0).all()  # paper conventions: 0.0 when nothing answered


def test_empty_prompt_is_refused_before_anything_is_stored(tiny_lm, tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    job = AnchorsRun(HFSampler(tiny_lm), store, CONFIG)
    with pytest.raises(TraceError, match="empty prompt"):
        job.run([Problem("p0", "", "", "6", base_completion=TRACE)])
    assert store.rollouts(job.run_id).empty


def test_empty_trace_and_trace_without_sentences_give_clear_errors():
    with pytest.raises(TraceError, match="empty completion"):
        ReasoningTrace.parse("p", "   ")
    with pytest.raises(TraceError, match="no sentences"):
        prefixes(ReasoningTrace.parse("p", "<think></think> 42"))


def test_answer_complete_waits_for_the_end_of_a_number():
    assert not answer_complete("so the answer is 2")
    assert not answer_complete("The answer is 2.")  # could become 2.5
    assert answer_complete("The answer is 2.5.\n")
    assert answer_complete("thus \\boxed{\\frac{1}{2}}")


# ---- the CLI, killed with SIGKILL mid-run ------------------------------------------------------------


def _cli(tiny_lm_dir, trace_file, store, *extra):
    return [
        sys.executable,
        "-m",
        "thoughtlens.cli",
        "anchors",
        "run",
        "--model",
        tiny_lm_dir,
        "--trace",
        str(trace_file),
        "--problem",
        "What is 3 + 5 - 2?",
        "--answer",
        "6",
        "-n",
        "4",
        "--max-new-tokens",
        "8",
        "--batch-size",
        "2",
        "--temperature",
        "1.0",
        "--seed",
        "5",
        "--dtype",
        "float32",
        "--store",
        str(store),
        *extra,
    ]


def _count(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=5) as con:
            return con.execute("SELECT count(*) FROM rollouts").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_cli_killed_at_several_points_resumes_without_loss_or_duplicates(tiny_lm_dir, tmp_path):
    trace_file = tmp_path / "trace.txt"
    trace_file.write_text(TRACE)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = tmp_path / "ref.sqlite"
    subprocess.run(_cli(tiny_lm_dir, trace_file, ref), check=True, env=env, capture_output=True, timeout=600)
    total = _count(ref)
    assert total > 0

    store = tmp_path / "killed.sqlite"
    for stop_at in (3, total // 2):
        proc = subprocess.Popen(
            _cli(tiny_lm_dir, trace_file, store), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 300
        while _count(store) < stop_at and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert _count(store) < total, "the run finished before it could be killed"
    done = subprocess.run(_cli(tiny_lm_dir, trace_file, store), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming run" in done.stderr

    a, b = RunStore(ref), RunStore(store)
    (run_a,), (run_b,) = a.runs(), b.runs()
    ra = a.rollouts(run_a["run_id"]).drop(columns=["created_at"])
    rb = b.rollouts(run_b["run_id"]).drop(columns=["created_at"])
    assert len(rb) == total and not rb.duplicated(["problem_id", "sentence_index", "condition", "sample_index"]).any()
    assert ra.equals(rb)  # fixed seed: the same rollouts as the uninterrupted run
    # The metrics are float64 functions of the same rollouts (MiniLM similarities, batched differently across
    # processes, enter only through the 0.8 threshold): the resumed store may sum them in another order only.
    ma, mb = a.metrics(run_a["run_id"]), b.metrics(run_b["run_id"])
    scale = numerics.magnitude(np.nan_to_num(ma.select_dtypes("float").to_numpy()))
    bound = numerics.tol(torch.float64, scale, depth=2 * 4)  # a metric sums over two prefixes' rollouts, n = 4 each
    pd.testing.assert_frame_equal(ma, mb, check_exact=False, rtol=0, atol=bound)


def test_unknown_answer_style_fails_before_any_work(tiny_lm, tmp_path):
    with pytest.raises(ConfigError, match="unknown answer style 'roman'.*last_number"):
        AnchorsRun(HFSampler(tiny_lm), RunStore(tmp_path / "s.sqlite"), AnchorsConfig(answer_style="roman"))
