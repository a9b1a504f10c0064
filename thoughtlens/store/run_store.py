"""RunStore: one SQLite file holding runs, problems, base traces, sentences, rollouts, metrics and artifacts.

Durability. The file is in WAL mode with `synchronous=FULL`: every commit is fsynced to the WAL before
`add_rollout` returns, so a committed rollout survives a kill -9 *and* an OS crash or power cut. (WAL +
NORMAL would already survive kill -9, since committed pages sit in the OS page cache, but could lose the
last commits on power loss.) The fsync costs ~3 ms here, negligible against a rollout's generation time.

Every write is its own transaction (autocommit), except multi-row writes (a trace with its sentences),
which are wrapped in one explicit transaction so a crash never leaves half a trace.

Threads. One connection, shared under a lock (`check_same_thread=False`), so samplers may call
`add_rollout` from worker threads. Several processes may open the same file (WAL readers never block;
writers wait up to `busy_timeout`).

One writer per run. `create_run` takes an advisory lock on the run (a byte-range lock in the sidecar file
`<store>.lock`, released by the kernel when the process ends, even on kill -9), so a second process
writing the same run of the same store is refused with a one-line StoreError instead of duplicating work.
Different runs in one store may be written at the same time.

Ctrl-C. A SIGINT that arrives during a write is held until the write has committed (or rolled back), so
an interrupted run stops at a rollout boundary: the store holds whole rollouts only.

Failures of the file itself (read-only path, disk full, a folder where a file should be) raise StoreError;
a write that fails is rolled back, so nothing is half-written.

Schema. `meta.schema_version` says which layout wrote the file. An older store is migrated in place by
the steps in `_MIGRATIONS` (none yet: v1 is the first layout), or refused with a one-line error when no
migration exists; a newer store is refused (upgrade thoughtlens).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import tempfile
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

try:  # advisory run locks; absent on Windows, where concurrent writers are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

import numpy as np
import pandas as pd

from thoughtlens.errors import StoreError

SCHEMA_VERSION = 1
_APP_ID = "thoughtlens.run_store"
# Artifacts that belong to a whole run (problem_id=None) are keyed by "" because SQLite treats NULLs in a
# primary key as distinct, which would let the same run-level artifact be inserted twice.
_RUN_LEVEL = ""
_MISSING = ...

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, config TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS problems (
    run_id TEXT NOT NULL REFERENCES runs(run_id), problem_id TEXT NOT NULL,
    problem TEXT NOT NULL, gt_answer TEXT,
    PRIMARY KEY (run_id, problem_id));
CREATE TABLE IF NOT EXISTS traces (
    run_id TEXT NOT NULL, problem_id TEXT NOT NULL,
    prompt TEXT NOT NULL, completion TEXT NOT NULL, answer TEXT, is_correct INTEGER,
    PRIMARY KEY (run_id, problem_id),
    FOREIGN KEY (run_id, problem_id) REFERENCES problems(run_id, problem_id));
CREATE TABLE IF NOT EXISTS sentences (
    run_id TEXT NOT NULL, problem_id TEXT NOT NULL, sentence_index INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL,
    tok_start INTEGER, tok_end INTEGER, tags TEXT,
    PRIMARY KEY (run_id, problem_id, sentence_index),
    FOREIGN KEY (run_id, problem_id) REFERENCES traces(run_id, problem_id));
CREATE TABLE IF NOT EXISTS rollouts (
    run_id TEXT NOT NULL, problem_id TEXT NOT NULL, sentence_index INTEGER NOT NULL,
    condition TEXT NOT NULL, sample_index INTEGER NOT NULL,
    text TEXT NOT NULL, answer TEXT, is_correct INTEGER, n_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL, error TEXT, created_at REAL NOT NULL,
    PRIMARY KEY (run_id, problem_id, sentence_index, condition, sample_index),
    FOREIGN KEY (run_id, problem_id) REFERENCES problems(run_id, problem_id));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, problem_id TEXT NOT NULL, sentence_index INTEGER NOT NULL,
    name TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, problem_id, sentence_index, name),
    FOREIGN KEY (run_id, problem_id) REFERENCES problems(run_id, problem_id));
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(run_id), problem_id TEXT NOT NULL, name TEXT NOT NULL,
    kind TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (run_id, problem_id, name));
"""
TABLES = ("runs", "problems", "traces", "sentences", "rollouts", "metrics", "artifacts")
# Schema migrations: _MIGRATIONS[v](con) turns a v store into a v+1 store inside one transaction.
# When the layout changes, bump SCHEMA_VERSION and add the step here; never edit _SCHEMA in place alone.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}
_ROLLOUT_COLUMNS = (
    "run_id, problem_id, sentence_index, condition, sample_index, text, answer, is_correct, "
    "n_tokens, finish_reason, error, created_at"
)


class RunStore:
    """A thoughtlens run store at `path` (created with its parent folder if missing).

    A file that is not SQLite, or an SQLite file written by something else, raises StoreError.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._run_locks: set[str] = set()
        # Run locks are released on close(), or when the store is garbage-collected without one.
        self._release_locks = weakref.finalize(self, _release_run_locks, self.path, self._run_locks)
        check_writable(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, so each add_rollout is committed before it returns.
            self._con = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot create run store {self.path} ({_reason(exc)}): pass a --store path in a writable folder"
            ) from None
        try:
            self._init_schema()
        except sqlite3.OperationalError as exc:
            self._con.close()
            raise _file_error(self.path, exc) from None
        except sqlite3.DatabaseError as exc:
            self._con.close()
            raise StoreError(
                f"{self.path} is not a readable thoughtlens run store ({exc}): "
                "delete or move it, or pass another --store path"
            ) from None
        except StoreError:
            self._con.close()
            raise

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._con.close()
            self._release_locks()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- schema ----------------------------------------------------------------------------------

    def _init_schema(self) -> None:
        con = self._con
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA foreign_keys=ON")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise StoreError(
                f"{self.path} is an SQLite file but not a thoughtlens run store "
                f"(tables: {', '.join(sorted(tables))}): pass another --store path"
            )
        if not tables:
            with self._transaction():
                for statement in _statements(_SCHEMA):
                    con.execute(statement)
                con.execute("INSERT INTO meta VALUES ('app', ?), ('schema_version', ?)", (_APP_ID, str(SCHEMA_VERSION)))
            return
        meta = dict(con.execute("SELECT key, value FROM meta"))
        if meta.get("app") != _APP_ID:
            raise StoreError(
                f"{self.path} is an SQLite file but not a thoughtlens run store: pass another --store path"
            )
        try:
            version = int(meta.get("schema_version", "0"))
        except ValueError:
            raise StoreError(
                f"{self.path} has an unreadable schema version {meta.get('schema_version')!r}: "
                "pass another --store path"
            ) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema v{version}, newer than this thoughtlens (v{SCHEMA_VERSION}): "
                "upgrade thoughtlens"
            )
        if version < SCHEMA_VERSION:
            self._migrate(version)
        missing = [t for t in TABLES if t not in tables]
        if missing:
            raise StoreError(
                f"{self.path} is an incomplete run store (no table {', '.join(missing)}): "
                "delete or move it, or pass another --store path"
            )

    def _migrate(self, version: int) -> None:
        """Bring a store written by an older thoughtlens up to SCHEMA_VERSION, one step per transaction."""
        for v in range(version, SCHEMA_VERSION):
            if v not in _MIGRATIONS:
                raise StoreError(
                    f"{self.path} has old store schema v{version} (need v{SCHEMA_VERSION}) and no migration "
                    "from it exists: re-run into a new --store path, or open it with the thoughtlens that wrote it"
                )
            with self._transaction() as con:
                _MIGRATIONS[v](con)
                con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(v + 1),))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One explicit transaction (autocommit mode otherwise commits per statement). Ctrl-C is held until
        it has committed or rolled back; a full disk or read-only file becomes a StoreError (rolled back)."""
        with self._lock, _sigint_deferred():
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    yield self._con
                except BaseException:
                    if self._con.in_transaction:
                        self._con.execute("ROLLBACK")
                    raise
                self._con.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self._con.in_transaction:  # COMMIT itself failed (e.g. disk full): undo the whole write
                    self._con.execute("ROLLBACK")
                raise _file_error(self.path, exc) from None

    def _execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        """Run one write statement under the lock (Ctrl-C held until it is done), turning a foreign-key
        failure or a file failure (disk full, read-only) into a one-line StoreError."""
        with self._lock, _sigint_deferred():
            try:
                return self._con.execute(sql, args)
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"{exc} in {self.path}: create the run (create_run) and problem (add_problem) first"
                ) from None
            except sqlite3.OperationalError as exc:
                raise _file_error(self.path, exc) from None

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._con.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise _file_error(self.path, exc) from None

    def _frame(self, sql: str, args: tuple = ()) -> pd.DataFrame:
        with self._lock:
            try:
                return pd.read_sql_query(sql, self._con, params=args)
            except (sqlite3.OperationalError, pd.errors.DatabaseError) as exc:
                raise _file_error(self.path, exc) from None

    # ---- runs ------------------------------------------------------------------------------------

    def create_run(self, run_id: str, config: dict) -> bool:
        """Register a run. True if new; False if it exists with an equal config (resume).
        A different config raises StoreError listing the keys that differ."""
        _require_id("run_id", run_id)
        config_json = _config_json(config)
        self.lock_run(run_id)
        with self._lock:
            row = self._query("SELECT config FROM runs WHERE run_id=?", (run_id,))
            if not row:
                self._execute("INSERT INTO runs VALUES (?, ?, ?)", (run_id, config_json, time.time()))
                return True
            row = row[0]
        old, new = json.loads(row[0]), json.loads(config_json)
        differing = sorted(k for k in old.keys() | new.keys() if old.get(k, _MISSING) != new.get(k, _MISSING))
        if differing:
            raise StoreError(
                f"run '{run_id}' already exists in {self.path} with a different config (keys: {', '.join(differing)}): "
                "use a new run id, or the same settings to resume"
            )
        return False

    def lock_run(self, run_id: str) -> None:
        """Declare this process the writer of `run_id` until close() (or the process ends, however it ends).
        Raises StoreError when another process is writing that run of this store now. Re-entrant."""
        if run_id not in self._run_locks:
            _RUN_LOCKS.acquire(self.path, run_id)
            self._run_locks.add(run_id)

    def runs(self) -> list[dict]:
        rows = self._query("SELECT run_id, config, created_at FROM runs ORDER BY created_at, run_id")
        return [{"run_id": r, "config": json.loads(c), "created_at": t} for r, c, t in rows]

    def run(self, run_id: str) -> dict:
        for r in self.runs():
            if r["run_id"] == run_id:
                return r
        known = ", ".join(r["run_id"] for r in self.runs()) or "none"
        raise StoreError(f"no run '{run_id}' in {self.path} (runs: {known}): pass one of those run ids")

    # ---- problems and base traces ----------------------------------------------------------------

    def add_problem(self, run_id: str, problem_id: str, problem: str, gt_answer: str | None) -> None:
        """Insert or update a problem of a run."""
        _require_id("problem_id", problem_id)
        self._execute(
            "INSERT INTO problems VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET problem=excluded.problem, gt_answer=excluded.gt_answer",
            (run_id, problem_id, problem, gt_answer),
        )

    def problems(self, run_id: str) -> pd.DataFrame:
        """Columns: run_id, problem_id, problem, gt_answer."""
        return self._frame("SELECT * FROM problems WHERE run_id=? ORDER BY problem_id", (run_id,))

    def add_trace(
        self,
        run_id: str,
        problem_id: str,
        prompt: str,
        completion: str,
        answer: str | None,
        is_correct: bool | None,
        sentences: list[dict],
    ) -> None:
        """Insert or replace the base trace of a problem with its sentences, atomically.
        Sentence dicts: index, start, end, text, and optionally tok_start, tok_end, tags (list[str] | None)."""
        rows = [_sentence_row(run_id, problem_id, s) for s in sentences]
        try:
            with self._transaction() as con:
                con.execute("DELETE FROM sentences WHERE run_id=? AND problem_id=?", (run_id, problem_id))
                con.execute(
                    "INSERT OR REPLACE INTO traces VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, problem_id, prompt, completion, answer, _bool_or_none(is_correct)),
                )
                con.executemany("INSERT INTO sentences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            raise StoreError(
                f"cannot store trace of '{problem_id}' ({exc}): add_problem first, and give unique sentence indices"
            ) from None

    def trace(self, run_id: str, problem_id: str) -> dict | None:
        """The stored base trace as a dict (prompt, completion, answer, is_correct, sentences), or None."""
        rows = self._query(
            "SELECT prompt, completion, answer, is_correct FROM traces WHERE run_id=? AND problem_id=?",
            (run_id, problem_id),
        )
        if not rows:
            return None
        prompt, completion, answer, is_correct = rows[0]
        sents = self._query(
            'SELECT sentence_index, start, "end", text, tok_start, tok_end, tags FROM sentences '
            "WHERE run_id=? AND problem_id=? ORDER BY sentence_index",
            (run_id, problem_id),
        )
        keys = ("index", "start", "end", "text", "tok_start", "tok_end", "tags")
        sentences = [dict(zip(keys, s[:6] + (None if s[6] is None else json.loads(s[6]),))) for s in sents]
        return {
            "prompt": prompt,
            "completion": completion,
            "answer": answer,
            "is_correct": None if is_correct is None else bool(is_correct),
            "sentences": sentences,
        }

    # ---- rollouts --------------------------------------------------------------------------------

    def add_rollout(
        self,
        run_id: str,
        problem_id: str,
        sentence_index: int,
        condition: str,
        sample_index: int,
        *,
        text: str,
        answer: str | None,
        is_correct: bool | None,
        n_tokens: int,
        finish_reason: str,
        error: str | None = None,
    ) -> bool:
        """Commit one rollout now. Returns False (and changes nothing) if that key is already stored,
        except that a stored *error* rollout is replaced by a later successful one (a retry)."""
        row = (
            run_id, problem_id, int(sentence_index), condition, int(sample_index), text, answer,
            _bool_or_none(is_correct), int(n_tokens), finish_reason, error, time.time(),
        )  # fmt: skip
        cur = self._execute(
            f"INSERT INTO rollouts ({_ROLLOUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET text=excluded.text, answer=excluded.answer, is_correct=excluded.is_correct, "
            "n_tokens=excluded.n_tokens, finish_reason=excluded.finish_reason, error=excluded.error, "
            "created_at=excluded.created_at "
            "WHERE rollouts.finish_reason='error' AND excluded.finish_reason!='error'",
            row,
        )
        return cur.rowcount == 1

    def done_rollouts(self, run_id: str, problem_id: str | None = None) -> set[tuple[str, int, str, int]]:
        """Keys (problem_id, sentence_index, condition, sample_index) of stored rollouts that did not
        end in an error, i.e. the work a resumed run can skip (errored ones are retried)."""
        sql = (
            "SELECT problem_id, sentence_index, condition, sample_index FROM rollouts "
            "WHERE run_id=? AND finish_reason!='error'"
        )
        args: tuple = (run_id,)
        if problem_id is not None:
            sql, args = sql + " AND problem_id=?", (run_id, problem_id)
        return {tuple(r) for r in self._query(sql, args)}  # type: ignore[misc]

    def rollouts(self, run_id: str, problem_id: str | None = None) -> pd.DataFrame:
        """All rollouts of a run (errors included), ordered by key. Missing values (answer, error) are NA;
        is_correct is a nullable boolean."""
        sql = f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE run_id=?"
        args: tuple = (run_id,)
        if problem_id is not None:
            sql, args = sql + " AND problem_id=?", (run_id, problem_id)
        df = self._frame(sql + " ORDER BY problem_id, sentence_index, condition, sample_index", args)
        df["is_correct"] = df["is_correct"].astype("boolean")
        return df

    # ---- metrics ---------------------------------------------------------------------------------

    def put_metrics(self, run_id: str, problem_id: str, sentence_index: int, metrics: dict[str, float | None]) -> None:
        """Upsert metrics of one sentence; metric names not given keep their stored values."""
        rows = [(run_id, problem_id, int(sentence_index), name, _float_or_none(name, v)) for name, v in metrics.items()]
        try:
            with self._transaction() as con:
                con.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"cannot store metrics of '{problem_id}' ({exc}): add_problem first") from None

    def metrics(self, run_id: str, problem_id: str | None = None) -> pd.DataFrame:
        """One row per (problem_id, sentence_index), one float column per metric name (NaN where unset)."""
        sql = "SELECT problem_id, sentence_index, name, value FROM metrics WHERE run_id=?"
        args: tuple = (run_id,)
        if problem_id is not None:
            sql, args = sql + " AND problem_id=?", (run_id, problem_id)
        long = self._frame(sql, args)
        if long.empty:
            return pd.DataFrame(columns=["problem_id", "sentence_index"])
        wide = long.pivot(index=["problem_id", "sentence_index"], columns="name", values="value")
        wide.columns.name = None
        return wide.reset_index().sort_values(["problem_id", "sentence_index"], ignore_index=True)

    # ---- artifacts -------------------------------------------------------------------------------

    def put_artifact(self, run_id: str, name: str, value: Any, problem_id: str | None = None) -> None:
        """Upsert a named value: a numpy array (stored losslessly with np.save) or anything JSON-serialisable."""
        kind, blob = _encode_artifact(name, value)
        self._execute(
            "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?)",
            (run_id, _RUN_LEVEL if problem_id is None else problem_id, name, kind, blob),
        )

    def get_artifact(self, run_id: str, name: str, problem_id: str | None = None, default: Any = _MISSING) -> Any:
        """The stored value; if absent, `default`, or StoreError when no default is given."""
        rows = self._query(
            "SELECT kind, value FROM artifacts WHERE run_id=? AND problem_id=? AND name=?",
            (run_id, _RUN_LEVEL if problem_id is None else problem_id, name),
        )
        if not rows:
            if default is _MISSING:
                where = f"problem '{problem_id}' of " if problem_id is not None else ""
                raise StoreError(
                    f"no artifact '{name}' for {where}run '{run_id}' in {self.path}: compute it first or pass default="
                )
            return default
        return _decode_artifact(*rows[0])

    # ---- export ----------------------------------------------------------------------------------

    def to_pandas(self, table: str) -> pd.DataFrame:
        """A whole table as a DataFrame (all runs). Tables: runs, problems, traces, sentences, rollouts, metrics,
        artifacts."""
        if table not in TABLES:
            raise StoreError(f"unknown table '{table}': use one of {', '.join(TABLES)}")
        return self._frame(f"SELECT * FROM {table}")  # table name checked against TABLES above

    def export_parquet(self, out_dir: str | Path) -> list[Path]:
        """Write every table to `out_dir/<table>.parquet`; returns the paths written."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for table in TABLES:
            path = out / f"{table}.parquet"
            self.to_pandas(table).to_parquet(path, index=False)
            paths.append(path)
        return paths


# ---- the store file: writability, failures, Ctrl-C, one writer per run -----------------------------


def check_writable(path: str | Path) -> Path:
    """Raise a one-line StoreError when a run store cannot be created or written at `path` (a folder, a
    parent that is a file, a read-only folder or file); creates nothing. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"run store path {path} is a directory: pass a file path such as {path / 'run.sqlite'}")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(
                f"run store {path} is read-only: pass a writable --store path (or copy the file somewhere writable)"
            )
        folder = path.parent
    else:
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise StoreError(
                f"cannot create run store {path}: {folder} is a file, not a folder: pass another --store path"
            )
    # WAL mode writes <store>-wal and -shm next to the file, and the run lock <store>.lock: the folder must be
    # writable. os.access alone says yes to root on a read-only mount or /proc, so probe with a temporary file.
    try:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError("permission denied")
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise StoreError(
            f"cannot write run store {path}: the folder {folder} is not writable ({_reason(exc)}): "
            "pass a --store path in a writable folder"
        ) from None
    return path


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _file_error(path: Path, exc: BaseException) -> StoreError:
    """A one-line StoreError for an SQLite failure of the file itself, naming the fix."""
    reason = _reason(exc)
    low = reason.lower()
    if "full" in low:
        fix = "free disk space, then run the same command again to resume (finished rollouts are kept)"
    elif "readonly" in low or "read-only" in low or "unable to open" in low or "permission" in low:
        fix = "pass a --store path in a writable folder"
    elif "locked" in low or "busy" in low:
        fix = "another process is holding the store: wait for it to finish, or pass another --store path"
    else:
        fix = "check the disk and the file, or pass another --store path"
    return StoreError(f"cannot use run store {path} ({reason}): {fix}")


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and raise KeyboardInterrupt once the block is done,
    so a write is never cut in half. Only in the main thread, and only over Python's default handler."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


class _RunLocks:
    """Per-process registry of run locks: byte-range locks (fcntl.lockf) on the sidecar file <store>.lock,
    one byte per run (at an offset hashed from the run id). POSIX locks belong to the process and all of
    them drop when any descriptor of the file is closed, so the process keeps one descriptor per lock file
    and counts holders per run."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._files: dict[str, tuple[int, dict[int, int]]] = {}  # lock path -> (fd, {offset: holders})

    @staticmethod
    def _where(path: Path, run_id: str) -> tuple[str, int]:
        offset = int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=6).digest(), "little")
        return str(path.resolve()) + ".lock", offset

    def acquire(self, path: Path, run_id: str) -> None:
        if fcntl is None:  # pragma: no cover
            return
        lock_path, offset = self._where(path, run_id)
        with self._mutex:
            fd, held = self._files.get(lock_path, (None, {}))
            if fd is None:
                try:
                    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the run lock {lock_path} ({_reason(exc)}): "
                        "pass a --store path in a writable folder"
                    ) from None
                self._files[lock_path] = (fd, held)
            if held.get(offset, 0) == 0:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                except OSError:
                    if not held:
                        os.close(fd)
                        del self._files[lock_path]
                    raise StoreError(
                        f"run '{run_id}' of {path} is being written by another process right now: wait for it "
                        "to finish (or stop it), or pass another --store path"
                    ) from None
            held[offset] = held.get(offset, 0) + 1

    def release(self, path: Path, run_id: str) -> None:
        if fcntl is None:  # pragma: no cover
            return
        lock_path, offset = self._where(path, run_id)
        with self._mutex:
            if lock_path not in self._files:
                return
            fd, held = self._files[lock_path]
            held[offset] = held.get(offset, 1) - 1
            if held[offset] <= 0:
                del held[offset]
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
            if not held:
                os.close(fd)
                del self._files[lock_path]


_RUN_LOCKS = _RunLocks()


def _release_run_locks(path: Path, run_ids: set[str]) -> None:
    for run_id in list(run_ids):
        _RUN_LOCKS.release(path, run_id)
    run_ids.clear()


# ---- private helpers -----------------------------------------------------------------------------


def _statements(script: str) -> list[str]:
    """Split the schema into statements: executescript() would COMMIT our open transaction."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _require_id(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise StoreError(f"{what} must be a non-empty string, got {value!r}: pass a name such as 'gsm8k-0'")


def _config_json(config: dict) -> str:
    if not isinstance(config, dict):
        raise StoreError(f"run config must be a dict, got {type(config).__name__}: pass the run's settings as a dict")
    try:
        return json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"run config is not JSON-serialisable ({exc}): convert paths and objects to str first"
        ) from None


def _bool_or_none(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))


def _float_or_none(name: str, value: object) -> float | None:
    if value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StoreError(
            f"metric '{name}' must be a number or None, got {value!r}: store non-numeric results with put_artifact"
        ) from None


def _sentence_row(run_id: str, problem_id: str, s: dict) -> tuple:
    missing = [k for k in ("index", "start", "end", "text") if k not in s]
    if missing:
        raise StoreError(
            f"sentence dict lacks {', '.join(missing)}: "
            "give index, start, end, text (and optionally tok_start, tok_end, tags)"
        )
    tags = s.get("tags")
    return (
        run_id, problem_id, int(s["index"]), int(s["start"]), int(s["end"]), s["text"],
        s.get("tok_start"), s.get("tok_end"), None if tags is None else json.dumps(list(tags)),
    )  # fmt: skip


def _encode_artifact(name: str, value: Any) -> tuple[str, bytes]:
    if isinstance(value, np.ndarray):
        buf = io.BytesIO()
        try:
            np.save(buf, value, allow_pickle=False)
        except ValueError:
            raise StoreError(
                f"artifact '{name}' is an object array, which cannot be stored safely: "
                "convert it to a numeric dtype or a list"
            ) from None
        return "npy", buf.getvalue()
    try:
        return "json", json.dumps(value).encode()
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"artifact '{name}' is neither a numpy array nor JSON-serialisable ({exc}): convert it first"
        ) from None


def _decode_artifact(kind: str, blob: bytes) -> Any:
    if kind == "npy":
        # allow_pickle=False: a store file may come from elsewhere; never unpickle its contents.
        return np.load(io.BytesIO(blob), allow_pickle=False)
    return json.loads(blob)


def pick_one(kind: str, given: str | None, available: list[str], param: str, where: str) -> str:
    """The one `kind` (run, problem) to use: `given` if valid, the only one available, or a one-line error that
    names the parameter to pass (`param`, e.g. "run_id"; the CLI names its option instead)."""
    if given is not None:
        if given not in available:
            raise StoreError(
                f"no {kind} '{given}' in {where} ({kind}s: {', '.join(available) or 'none'}); "
                f"pass one of those as {param}=..."
            )
        return given
    if not available:
        raise StoreError(f"{where} has no {kind}s; run `thoughtlens anchors run` into it first")
    if len(available) > 1:
        raise StoreError(
            f"{where} has {len(available)} {kind}s ({', '.join(available[:10])}); pick one with {param}=..."
        )
    return available[0]


# ---- run kinds --------------------------------------------------------------------------------------
# A store holds several kinds of runs: anchors runs (`thoughtlens anchors run`, ids "anchors-...") and the
# runs the Thought Branches commands derive from them. A run's kind is the "kind" its config records when it
# records one, else what its id's prefix says; a run named otherwise (`--run-id NAME`) is "unlabelled".

ANCHORS_KIND = "anchors"
UNLABELLED = "unlabelled"
_PREFIX_KINDS = (
    ("anchors-", ANCHORS_KIND),
    ("resilience-", "resilience"),
    ("intervene-", "intervention"),
    ("transplant-", "transplant"),
)


def run_kind(run_id: str, config: dict | None = None) -> str:
    """The kind of a stored run: anchors, resilience, intervention, transplant, white_box, ..., or unlabelled."""
    kind = config.get("kind") if isinstance(config, dict) else None
    if isinstance(kind, str) and kind:
        return kind
    for prefix, name in _PREFIX_KINDS:
        if run_id.startswith(prefix):
            return name
    return UNLABELLED


def pick_run_id(
    store: RunStore,
    given: str | None = None,
    kinds: Sequence[str] = (ANCHORS_KIND,),
    param: str = "run_id",
) -> tuple[str, str]:
    """The run to use and one line saying which it is and why. `given` (any kind) if it is in the store;
    else the latest run of the first of `kinds` the store holds (the others of that kind are named); else
    the only unlabelled run (one named by the user), else the store's only run; else a one-line StoreError
    naming `param` (e.g. "run_id"; the CLI: "--run")."""
    runs = store.runs()  # oldest first
    ids = [r["run_id"] for r in runs]
    kind_of = {r["run_id"]: run_kind(r["run_id"], r["config"]) for r in runs}
    hint = f"{param} ..." if param.startswith("-") else f"{param}=... (--run ... on the command line)"
    if given is not None:
        if given not in kind_of:
            raise StoreError(
                f"no run '{given}' in {store.path} (runs: {_listed(ids, kind_of) or 'none'}); pass one of those "
                f"as {hint}"
            )
        return given, f"run {given} ({kind_of[given]} run, as given)"
    if not ids:
        raise StoreError(f"{store.path} has no runs; run `thoughtlens anchors run` into it first")
    for kind in kinds:
        same = [i for i in ids if kind_of[i] == kind]
        if not same:
            continue
        chosen, others = same[-1], same[:-1]
        rest = [i for i in ids if kind_of[i] != kind]
        if others:
            why = f"latest of {len(same)} {kind} runs; others: {', '.join(reversed(others))}"
        else:
            why = f"the only {kind} run"
        if rest:
            why += f"; also in the store: {_listed(rest, kind_of)}"
        return chosen, f"run {chosen} ({why}" + (f"; another with {hint})" if len(ids) > 1 else ")")
    if len(ids) == 1:
        return ids[0], f"run {ids[0]} (the store's only run, a {kind_of[ids[0]]} run)"
    unlabelled = [i for i in ids if kind_of[i] == UNLABELLED]
    if len(unlabelled) == 1:
        rest = [i for i in ids if i != unlabelled[0]]
        return unlabelled[0], (
            f"run {unlabelled[0]} (the only run named by hand; also in the store: {_listed(rest, kind_of)}; "
            f"another with {hint})"
        )
    shown = ", ".join(ids[:10]) + (f", and {len(ids) - 10} more" if len(ids) > 10 else "")
    raise StoreError(f"{store.path} has {len(ids)} runs ({shown}); pick one with {hint}")


def _listed(ids: Sequence[str], kind_of: dict[str, str], limit: int = 10) -> str:
    shown = ", ".join(f"{i} ({kind_of[i]})" for i in ids[:limit])
    return shown + (f", and {len(ids) - limit} more" if len(ids) > limit else "")
