"""RunStore: round trips, resume semantics, bad files, kill -9 durability, exact numpy artifacts."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest

from thoughtlens.errors import StoreError
from thoughtlens.store import RunStore

CONFIG = {"model": "smollm2", "rollouts": 4, "temperature": 0.6, "stop": ["</s>"]}


def _rollout(store: RunStore, sentence: int, sample: int, **over) -> bool:
    fields = dict(text=f"text {sentence}/{sample}", answer=str(sample), is_correct=sample % 2 == 0,
                  n_tokens=10 + sample, finish_reason="stop")  # fmt: skip
    fields.update(over)
    return store.add_rollout("r1", "p1", sentence, "resampled", sample, **fields)


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "sub" / "run.sqlite")
    s.create_run("r1", CONFIG)
    s.add_problem("r1", "p1", "What is 2+2?", "4")
    yield s
    s.close()


def test_file_is_wal_and_versioned(store):
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert dict(con.execute("SELECT key, value FROM meta"))["schema_version"] == "1"


def test_rollout_round_trip(store):
    assert _rollout(store, 0, 0)
    assert _rollout(store, 0, 1, answer=None, is_correct=None, finish_reason="length")
    df = store.rollouts("r1")
    assert list(df["sample_index"]) == [0, 1]
    first, second = df.iloc[0], df.iloc[1]
    assert (first["text"], first["answer"], bool(first["is_correct"]), first["n_tokens"]) == ("text 0/0", "0", True, 10)
    assert pd.isna(second["answer"]) and pd.isna(second["is_correct"]) and second["finish_reason"] == "length"
    assert store.done_rollouts("r1") == {("p1", 0, "resampled", 0), ("p1", 0, "resampled", 1)}
    assert store.done_rollouts("r1", "other") == set()


def test_duplicate_rollout_is_ignored(store):
    assert _rollout(store, 2, 3, text="first")
    assert not _rollout(store, 2, 3, text="second")
    df = store.rollouts("r1")
    assert len(df) == 1 and df.iloc[0]["text"] == "first"


def test_error_rollout_is_replaced_by_a_successful_retry_only(store):
    assert _rollout(store, 0, 0, text="", finish_reason="error", error="HTTP 500")
    assert store.done_rollouts("r1") == set()  # errors are retried on resume
    assert not _rollout(store, 0, 0, text="", finish_reason="error", error="HTTP 503")
    assert store.rollouts("r1").iloc[0]["error"] == "HTTP 500"
    assert _rollout(store, 0, 0, text="ok")
    row = store.rollouts("r1").iloc[0]
    assert (row["text"], row["finish_reason"]) == ("ok", "stop") and pd.isna(row["error"])
    assert not _rollout(store, 0, 0, text="later")
    assert store.done_rollouts("r1") == {("p1", 0, "resampled", 0)}


def test_create_run_resume_and_conflict(store):
    assert not store.create_run("r1", dict(CONFIG))  # same config: resume
    with pytest.raises(StoreError, match=r"keys: rollouts, seed\)") as err:
        store.create_run("r1", {**CONFIG, "rollouts": 8, "seed": 1})
    assert "\n" not in str(err.value)
    assert store.create_run("r2", {"x": 1})
    assert [r["run_id"] for r in store.runs()] == ["r1", "r2"]
    assert store.run("r1")["config"] == CONFIG


def test_unknown_run_and_problem_are_clear_errors(store):
    with pytest.raises(StoreError, match="no run 'nope'.*runs: r1"):
        store.run("nope")
    with pytest.raises(StoreError, match="add_problem"):
        store.add_rollout(
            "r1", "missing", 0, "kept", 0, text="", answer=None, is_correct=None, n_tokens=0, finish_reason="stop"
        )
    with pytest.raises(StoreError, match="JSON-serialisable"):
        store.create_run("r3", {"obj": object()})
    with pytest.raises(StoreError, match="unknown table 'foo'"):
        store.to_pandas("foo")
    with pytest.raises(StoreError, match="non-empty string"):
        store.create_run("", {})


def test_trace_and_sentences_round_trip(store):
    sents = [
        {"index": 0, "start": 10, "end": 20, "text": "First one.", "tok_start": 3, "tok_end": 6, "tags": ["plan"]},
        {"index": 1, "start": 21, "end": 30, "text": "Second.", "tok_start": 6, "tok_end": 8, "tags": None},
    ]
    store.add_trace("r1", "p1", "PROMPT", "COMPLETION", "4", True, sents)
    store.add_trace("r1", "p1", "PROMPT", "COMPLETION", "4", True, sents)  # replace, not duplicate
    got = store.trace("r1", "p1")
    assert got["sentences"] == sents and got["is_correct"] is True and got["answer"] == "4"
    assert len(store.to_pandas("sentences")) == 2 and len(store.to_pandas("traces")) == 1
    assert store.trace("r1", "nope") is None
    with pytest.raises(StoreError, match="lacks start"):
        store.add_trace("r1", "p1", "P", "C", None, None, [{"index": 0, "end": 1, "text": "x"}])


def test_metrics_upsert_and_wide_frame(store):
    store.put_metrics("r1", "p1", 0, {"accuracy": 0.5, "kl": None})
    store.put_metrics("r1", "p1", 1, {"accuracy": 0.25})
    store.put_metrics("r1", "p1", 0, {"kl": 1.5})  # merges with the stored accuracy
    df = store.metrics("r1")
    assert list(df["sentence_index"]) == [0, 1]
    assert df["accuracy"].tolist() == [0.5, 0.25]
    assert df["kl"].iloc[0] == 1.5 and np.isnan(df["kl"].iloc[1])
    with pytest.raises(StoreError, match="put_artifact"):
        store.put_metrics("r1", "p1", 0, {"label": "high"})
    assert store.metrics("r1", "other").empty


@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32),
        np.array([np.nan, np.inf, -0.0, 1e-300]),
        np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2],  # non-contiguous
        np.array(["a", "bé"]),
    ],
)
def test_numpy_artifacts_round_trip_exactly(store, array):
    store.put_artifact("r1", "a", array, problem_id="p1")
    got = store.get_artifact("r1", "a", problem_id="p1")
    assert got.dtype == array.dtype and got.shape == array.shape
    assert got.tobytes() == np.ascontiguousarray(array).tobytes()


def test_json_artifacts_upsert_default_and_errors(store):
    store.put_artifact("r1", "heads", [[1, 2], [3, 4]])
    store.put_artifact("r1", "heads", {"top": [5]})
    assert store.get_artifact("r1", "heads") == {"top": [5]}
    assert store.get_artifact("r1", "heads", problem_id="p1", default=None) is None
    with pytest.raises(StoreError, match="no artifact 'x'"):
        store.get_artifact("r1", "x")
    with pytest.raises(StoreError, match="object array"):
        store.put_artifact("r1", "o", np.array([object()]))
    with pytest.raises(StoreError, match="JSON-serialisable"):
        store.put_artifact("r1", "o", {1, 2})
    assert len(store.to_pandas("artifacts")) == 1


def test_export_parquet(store, tmp_path):
    _rollout(store, 0, 0)
    store.put_metrics("r1", "p1", 0, {"accuracy": 1.0})
    store.put_artifact("r1", "attn", np.eye(2))
    paths = store.export_parquet(tmp_path / "pq")
    assert {p.stem for p in paths} == {"runs", "problems", "traces", "sentences", "rollouts", "metrics", "artifacts"}
    back = pd.read_parquet(tmp_path / "pq" / "rollouts.parquet")
    assert back["text"].tolist() == ["text 0/0"] and back["n_tokens"].tolist() == [10]
    blob = pd.read_parquet(tmp_path / "pq" / "artifacts.parquet")["value"].item()
    assert np.array_equal(np.load(io.BytesIO(blob)), np.eye(2))


def test_concurrent_writers_from_threads(store):
    def work(t):
        for i in range(25):
            _rollout(store, t, i)
            _rollout(store, t, i)  # duplicate from the same thread

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(store.rollouts("r1")) == 100 and len(store.done_rollouts("r1")) == 100


def test_garbage_file_is_store_error(tmp_path):
    path = tmp_path / "run.sqlite"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match="not a readable thoughtlens run store.*--store") as err:
        RunStore(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_foreign_sqlite_file_is_store_error(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a thoughtlens run store \\(tables: users\\)"):
        RunStore(path)


def test_newer_schema_is_store_error(tmp_path):
    path = tmp_path / "run.sqlite"
    RunStore(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="upgrade thoughtlens"):
        RunStore(path)


def test_directory_path_is_store_error(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        RunStore(tmp_path)


# ---- kill -9 ---------------------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from thoughtlens.store import RunStore
    path, total = sys.argv[1], int(sys.argv[2])
    store = RunStore(path)
    store.create_run("r", {"n": total})
    store.add_problem("r", "p", "problem", None)
    done = store.done_rollouts("r")
    for i in range(total):
        if ("p", i // 10, "kept", i % 10) in done:
            continue
        store.add_rollout("r", "p", i // 10, "kept", i % 10, text=f"t{i}", answer=None, is_correct=None,
                          n_tokens=i, finish_reason="stop")
        print(i, flush=True)  # only after add_rollout returned, i.e. after the commit
    print("finished", flush=True)
    """
)


def _run_writer(path, total: int, kill_after: int | None) -> list[int]:
    """Start the writer; SIGKILL it once it has reported `kill_after` commits. Returns every index it reported
    (those still in the pipe at the kill included)."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(total)], stdout=subprocess.PIPE, text=True)
    reported = []
    try:
        for line in proc.stdout:
            if line.strip() == "finished":
                break
            reported.append(int(line))
            if kill_after is not None and len(reported) >= kill_after:
                os.kill(proc.pid, signal.SIGKILL)
                # On a loaded machine the writer runs ahead of this reader: lines it printed before the kill
                # are still in the pipe. Read them too, so `reported` is every commit the writer announced.
                reported += [int(x) for x in proc.stdout.read().split() if x.isdigit()]
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    return reported


def _stored_indices(path) -> list[int]:
    with RunStore(path) as s:
        df = s.rollouts("r")
    assert not df.duplicated(["sentence_index", "condition", "sample_index"]).any()
    idx = sorted(df["sentence_index"] * 10 + df["sample_index"])
    for i in idx:  # each row holds what was written for its key
        assert df.loc[(df.sentence_index == i // 10) & (df.sample_index == i % 10), "text"].item() == f"t{i}"
    return idx


@pytest.mark.slow
def test_kill_minus_9_loses_and_duplicates_nothing(tmp_path):
    path, total = tmp_path / "run.sqlite", 300
    committed: list[int] = []
    for kill_after in (3, 40):  # each writer imports thoughtlens (torch, ~7 s here), so only two kills
        reported = _run_writer(path, total, kill_after)
        assert len(reported) >= kill_after
        committed += reported
        stored = _stored_indices(path)
        # The writer commits before it prints, so the kill may land after a commit it never reported:
        # the store holds exactly what was reported, plus at most that one.
        assert stored[: len(committed)] == sorted(committed) == list(range(len(committed)))
        assert len(stored) - len(committed) in (0, 1)
        committed = stored
    reported = _run_writer(path, total, None)  # resume to the end
    assert sorted(committed + reported) == list(range(total))
    assert _stored_indices(path) == list(range(total))
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
