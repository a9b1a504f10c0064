"""Shared by the bad-input tests: run the `thoughtlens` CLI and check the error contract of docs/bad_inputs.md
(exit code, stderr = one `error:` line plus at most one hint line, no traceback, the fix named)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

NO_MODEL = "/nonexistent/thoughtlens-model"  # an option checked before the model load fails on the option, not on this


def cli(*args: str):
    """`thoughtlens ARGS` in process (typer's CliRunner on thoughtlens.cli.app); stdout and stderr kept apart."""
    from thoughtlens.cli import app

    env = {"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


def assert_one_line_error(result, *needles: str, code: int = 1, after_progress: bool = False) -> str:
    """The CLI failed with `code`, printed one error line (+ at most one hint line) naming `needles`, no traceback.

    after_progress: the error comes after work has started, so progress lines and notes may precede it; then
    only the part from the `error:` line on must be one line (+ hint). Otherwise stderr is that and nothing else.
    """
    err = result.stderr
    assert result.exit_code == code, f"exit {result.exit_code}, stderr: {err!r}, stdout: {result.stdout!r}"
    assert "Traceback" not in err + result.stdout, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert sum(line.startswith("error:") for line in lines) == 1, f"not exactly one error line: {err!r}"
    if after_progress:
        lines = lines[next(i for i, line in enumerate(lines) if line.startswith("error:")) :]
    assert 1 <= len(lines) <= 2, f"stderr is not one line (+ hint): {err!r}"
    assert lines[0].startswith("error:"), err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_one_line(exc: BaseException, *needles: str) -> str:
    """A library error: one line, naming `needles`, with a fix after a colon or semicolon."""
    msg = str(exc)
    assert msg and "\n" not in msg, repr(msg)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def files_under(folder: Path) -> list[str]:
    """Every file under `folder` (relative names), to show that a refused command wrote nothing."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def store_is_consistent(path: Path) -> None:
    """SQLite's own integrity and foreign-key checks pass, and every stored trace has its sentences."""
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = con.execute(
            "SELECT count(*) FROM traces t WHERE NOT EXISTS (SELECT 1 FROM sentences s "
            "WHERE s.run_id=t.run_id AND s.problem_id=t.problem_id)"
        ).fetchone()[0]
        assert orphans == 0, "a trace without its sentences: half-written"
    finally:
        con.close()


def writable_denied_path(tmp_path: Path) -> Path:
    """A store path that cannot be written: a read-only folder (or /proc when running as root, where chmod
    does not stop writes)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/proc/thoughtlens-readonly/run.sqlite")
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "run.sqlite"
