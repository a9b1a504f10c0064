"""Ctrl-C (SIGINT) during `thoughtlens anchors run`, at several points: the process exits within 10 s, says
how to resume, leaves a consistent store holding whole rollouts only, and the same command then resumes
with no rollout lost or duplicated."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from _badinput_cli import store_is_consistent

TRACE = (
    "First, we add three and five to get eight. Then we subtract two, which gives six. "
    "Let me double check: 3 + 5 = 8, and 8 - 2 = 6. So the answer is \\boxed{6}."
)
N = 4  # rollouts per prefix


def _command(model_dir, trace_file, store):
    return [
        sys.executable,
        "-m",
        "thoughtlens.cli",
        "anchors",
        "run",
        "--model",
        model_dir,
        "--trace",
        str(trace_file),
        "--problem",
        "What is 3 + 5 - 2?",
        "--answer",
        "6",
        "-n",
        str(N),
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
    ]


def _default_sigint() -> None:
    """In the child before exec: SIGINT at its default, as a terminal gives it. A suite started in the background
    by a non-interactive shell (`(pytest &)`) has SIGINT ignored, and the child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _count(store) -> int:
    try:
        with sqlite3.connect(store, timeout=5) as con:
            return con.execute("SELECT count(*) FROM rollouts").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # not created yet


def _keys(store) -> list[tuple]:
    with sqlite3.connect(store) as con:
        return con.execute("SELECT problem_id, sentence_index, condition, sample_index FROM rollouts").fetchall()


@pytest.mark.slow
def test_ctrl_c_at_several_points_then_resume(tiny_lm_dir, tmp_path):
    trace_file = tmp_path / "trace.txt"
    trace_file.write_text(TRACE)
    store = tmp_path / "run.sqlite"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Every (prefix, sample) of both conditions: 1 + number of sentences prefixes. Counted from the stored
    # trace after the first interruption, so the expected total does not come from the code under test's run.
    total = None
    for attempt, fraction in enumerate((0.0, 1 / 3, 2 / 3)):
        log = tmp_path / f"stderr{attempt}.txt"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                _command(tiny_lm_dir, trace_file, store),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=_default_sigint,
            )
            stop_at = max(1, int(fraction * total)) if total else 1
            deadline = time.time() + 300
            while _count(store) < stop_at and proc.poll() is None and time.time() < deadline:
                time.sleep(0.02)
            assert proc.poll() is None, f"the run ended before it could be interrupted: {log.read_text()[-2000:]}"
            proc.send_signal(signal.SIGINT)
            t0 = time.time()
            proc.wait(timeout=10)  # raises if it takes longer
            waited = time.time() - t0
        text = log.read_text()
        assert proc.returncode == 130, text[-2000:]
        assert waited < 10
        assert "Traceback" not in text, text[-3000:]
        assert "interrupted" in text and "resume" in text, text[-2000:]
        store_is_consistent(store)
        keys = _keys(store)
        assert len(keys) == len(set(keys))
        if total is None:
            with sqlite3.connect(store) as con:
                n_sentences = con.execute("SELECT count(*) FROM sentences").fetchone()[0]
            assert n_sentences >= 3
            total = (n_sentences + 1) * N * 2
        assert len(keys) < total, "the run finished before the interruption"

    done = subprocess.run(
        _command(tiny_lm_dir, trace_file, store), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    keys = _keys(store)
    n_prefixes = total // (2 * N)
    expected = {
        ("trace", k, c, j) for k, c, j in itertools.product(range(n_prefixes), ("resampled", "forced"), range(N))
    }
    assert {k[1:] for k in keys} == {k[1:] for k in expected}  # nothing lost
    assert len(keys) == total  # nothing duplicated
    store_is_consistent(store)
