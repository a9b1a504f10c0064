"""Bad run-store situations: other schema versions, two writers, unwritable paths, a full disk, Ctrl-C
during a write. Each ends in a one-line StoreError naming the fix, with nothing half-written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from _badinput_cli import assert_one_line, assert_one_line_error, cli, store_is_consistent, writable_denied_path

from thoughtlens.errors import StoreError
from thoughtlens.store import run_store
from thoughtlens.store.run_store import SCHEMA_VERSION, RunStore, check_writable


def _filled(path):
    store = RunStore(path)
    store.create_run("r1", {"n": 1})
    store.add_problem("r1", "p0", "What is 2 + 3?", "5")
    store.add_trace(
        "r1",
        "p0",
        "Q: 2 + 3?",
        "First add. So 5.",
        "5",
        True,
        [dict(index=0, start=0, end=10, text="First add."), dict(index=1, start=11, end=16, text="So 5.")],
    )
    store.add_rollout(
        "r1", "p0", 0, "resampled", 0, text="5", answer="5", is_correct=True, n_tokens=1, finish_reason="stop"
    )
    return store


def _set_schema_version(path, value):
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (value,))


# ---- schema versions ------------------------------------------------------------------------------------


def test_store_written_by_current_code_reopens_with_its_data(tmp_path):
    _filled(tmp_path / "s.sqlite").close()
    store = RunStore(tmp_path / "s.sqlite")
    assert len(store.rollouts("r1")) == 1 and store.trace("r1", "p0")["answer"] == "5"


@pytest.mark.parametrize(
    "version, needles",
    [
        (str(SCHEMA_VERSION + 1), ["newer than this thoughtlens", "upgrade thoughtlens"]),
        ("0", ["old store schema v0", "no migration", "new --store path"]),
        ("v1", ["unreadable schema version"]),
    ],
)
def test_store_of_another_schema_is_refused_in_one_line(tmp_path, version, needles):
    _filled(tmp_path / "s.sqlite").close()
    _set_schema_version(tmp_path / "s.sqlite", version)
    with pytest.raises(StoreError) as info:
        RunStore(tmp_path / "s.sqlite")
    assert_one_line(info.value, *needles)
    result = cli("anchors", "show", tmp_path / "s.sqlite")
    assert_one_line_error(result, *needles)


def test_older_store_is_migrated_when_a_migration_exists(tmp_path, monkeypatch):
    """The migration path: a v(N-1) store is brought to vN in place, its data kept."""
    _filled(tmp_path / "s.sqlite").close()
    _set_schema_version(tmp_path / "s.sqlite", str(SCHEMA_VERSION - 1))
    steps = []
    monkeypatch.setitem(
        run_store._MIGRATIONS,
        SCHEMA_VERSION - 1,
        lambda con: steps.append(con.execute("SELECT count(*) FROM rollouts").fetchone()[0]),
    )
    store = RunStore(tmp_path / "s.sqlite")
    assert steps == [1]
    assert dict(store._query("SELECT key, value FROM meta"))["schema_version"] == str(SCHEMA_VERSION)
    assert len(store.rollouts("r1")) == 1


def test_store_missing_tables_is_refused(tmp_path):
    _filled(tmp_path / "s.sqlite").close()
    with sqlite3.connect(tmp_path / "s.sqlite") as con:
        con.execute("DROP TABLE metrics")
    with pytest.raises(StoreError) as info:
        RunStore(tmp_path / "s.sqlite")
    assert_one_line(info.value, "incomplete run store", "metrics")


# ---- two writers ------------------------------------------------------------------------------------------

_HOLDER = textwrap.dedent("""
    import sys, time
    from thoughtlens.store.run_store import RunStore
    store = RunStore(sys.argv[1])
    store.create_run(sys.argv[2], {"n": 1})
    print("holding", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def holder(tmp_path):
    """Another process writing run 'r1' of tmp_path/s.sqlite (killed -9 at the end)."""
    path = tmp_path / "s.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), "r1"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    yield path, proc
    proc.kill()
    proc.wait(timeout=30)


def test_second_writer_of_the_same_run_is_refused(holder):
    path, proc = holder
    store = RunStore(path)
    with pytest.raises(StoreError) as info:
        store.create_run("r1", {"n": 1})
    assert_one_line(info.value, "'r1'", "another process", "wait for it")
    assert store.create_run("r2", {"n": 2})  # another run of the same store may be written at the same time
    proc.kill()  # kill -9: the kernel drops its lock, the run can be taken over (resumed)
    proc.wait(timeout=30)
    assert store.create_run("r1", {"n": 1}) is False
    store.close()


@pytest.mark.slow
def test_cli_second_writer_is_refused_and_writes_nothing(holder, tiny_lm_dir, tmp_path):
    path, _ = holder
    trace = tmp_path / "t.txt"
    trace.write_text("First we add 2 and 3 to get 5. Then we check it. So the answer is \\boxed{5}.")
    result = cli(
        "anchors",
        "run",
        "--model",
        tiny_lm_dir,
        "--trace",
        trace,
        "--problem",
        "What is 2 + 3?",
        "--run-id",
        "r1",
        "--store",
        path,
        "-n",
        "2",
        "--max-new-tokens",
        "4",
        "--dtype",
        "float32",
    )
    assert_one_line_error(result, "'r1'", "another process")
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM rollouts").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM problems").fetchone()[0] == 0


def test_same_process_may_reopen_its_own_run(tmp_path):
    a = RunStore(tmp_path / "s.sqlite")
    a.create_run("r1", {})
    b = RunStore(tmp_path / "s.sqlite")
    assert b.create_run("r1", {}) is False
    b.close()
    a.close()


# ---- unwritable paths and a full disk ------------------------------------------------------------------


def test_unwritable_store_path_is_one_line_and_creates_nothing(tmp_path):
    path = writable_denied_path(tmp_path)
    with pytest.raises(StoreError) as info:
        RunStore(path)
    assert_one_line(info.value, str(path), "writable folder")
    assert not path.exists()


def test_store_path_under_a_file_or_a_folder_path(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError) as info:
        check_writable(tmp_path / "f" / "s.sqlite")
    assert_one_line(info.value, "is a file, not a folder")
    with pytest.raises(StoreError) as info:
        RunStore(tmp_path)
    assert_one_line(info.value, "is a directory", "run.sqlite")


def test_read_only_store_file_is_refused(tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root writes read-only files anyway")
    _filled(tmp_path / "s.sqlite").close()
    (tmp_path / "s.sqlite").chmod(0o444)
    with pytest.raises(StoreError) as info:
        RunStore(tmp_path / "s.sqlite")
    assert_one_line(info.value, "read-only")


def test_full_disk_is_one_line_and_leaves_no_half_written_trace(tmp_path):
    """SQLite's max_page_count makes writes fail with SQLITE_FULL, the same error a full disk gives."""
    store = _filled(tmp_path / "s.sqlite")
    pages = store._query("PRAGMA page_count")[0][0]
    store._query(f"PRAGMA max_page_count={pages + 2}")
    big = "x" * 4000
    with pytest.raises(StoreError) as info:
        for j in range(1, 100):
            store.add_rollout(
                "r1", "p0", 0, "resampled", j, text=big, answer="5", is_correct=True, n_tokens=1, finish_reason="stop"
            )
    assert_one_line(info.value, "full", "free disk space", "resume")
    stored = len(store.rollouts("r1"))
    assert 1 <= stored < 100
    sentences = [dict(index=i, start=0, end=1, text=big) for i in range(20)]
    with pytest.raises(StoreError):
        store.add_trace("r1", "p0", "Q", big * 5, "5", True, sentences)
    # The failed trace write was rolled back whole: the old trace and its two sentences are intact.
    assert [s["text"] for s in store.trace("r1", "p0")["sentences"]] == ["First add.", "So 5."]
    assert len(store.rollouts("r1")) == stored
    store._query("PRAGMA max_page_count=1073741823")  # space freed: the same store goes on
    store.add_rollout(
        "r1", "p0", 0, "resampled", 99, text="5", answer="5", is_correct=True, n_tokens=1, finish_reason="stop"
    )
    store.close()
    store_is_consistent(tmp_path / "s.sqlite")


# ---- Ctrl-C inside a write ---------------------------------------------------------------------------------


def test_ctrl_c_during_a_write_is_held_until_it_has_committed(tmp_path):
    # Python's own handler, as in a terminal: a suite started in the background by a non-interactive shell
    # (`(pytest &)`) has SIGINT ignored, and the deferral (rightly) leaves any handler but Python's alone.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        store = _filled(tmp_path / "s.sqlite")
        with pytest.raises(KeyboardInterrupt):
            with store._transaction() as con:
                con.execute("INSERT INTO metrics VALUES ('r1', 'p0', 0, 'a', 1.0)")
                os.kill(os.getpid(), signal.SIGINT)  # arrives between the two statements of one write
                con.execute("INSERT INTO metrics VALUES ('r1', 'p0', 1, 'a', 2.0)")
        assert list(store.metrics("r1")["a"]) == [1.0, 2.0]  # both rows: the write was not cut in half
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the usual handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    store.close()
    store_is_consistent(tmp_path / "s.sqlite")
