"""The skip gate (tests/skip_gate.py): a planted skip with an unlisted reason fails the run; a listed one does not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _run(tmp_path: Path, body: str, allowlist: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_planted.py").write_text(
        "import pytest\n\n\ndef test_runs():\n    assert 1 + 1 == 2\n\n\n" + body, encoding="utf-8"
    )
    (tmp_path / "allowed.txt").write_text(allowlist, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(TESTS), THOUGHTLENS_SKIP_ALLOWLIST=str(tmp_path / "allowed.txt"))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "skip_gate",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


SKIP = "def test_planted_skip():\n    pytest.skip('the widget is not installed')\n"


def test_an_unlisted_skip_fails_the_run(tmp_path):
    r = _run(tmp_path, SKIP, "# nothing is allowed\nroot writes read-only files\n")
    assert r.returncode == pytest.ExitCode.TESTS_FAILED, r.stdout + r.stderr
    assert "1 passed, 1 skipped" in r.stdout
    assert "test_planted.py::test_planted_skip: the widget is not installed" in r.stdout


def test_a_listed_skip_passes(tmp_path):
    r = _run(tmp_path, SKIP, "widget is not installed\n")
    assert r.returncode == pytest.ExitCode.OK, r.stdout + r.stderr
    assert "1 passed, 1 skipped" in r.stdout and "allowed_skips" not in r.stdout


def test_a_module_level_skip_is_caught(tmp_path):
    body = "pytestmark = pytest.mark.skipif(True, reason='data folder missing')\n"
    r = _run(tmp_path, body, "widget is not installed\n")
    assert r.returncode == pytest.ExitCode.TESTS_FAILED, r.stdout + r.stderr
    assert "data folder missing" in r.stdout


def test_xfail_is_not_a_skip(tmp_path):
    body = (
        "@pytest.mark.xfail(reason='measured 0.41, goal 0.5', strict=True)\ndef test_goal():\n    assert 0.41 >= 0.5\n"
    )
    r = _run(tmp_path, body, "widget is not installed\n")
    assert r.returncode == pytest.ExitCode.OK, r.stdout + r.stderr
    assert "1 xfailed" in r.stdout


def test_the_committed_allowlist_parses():
    from skip_gate import allowed_patterns

    patterns = allowed_patterns()
    assert patterns and any(p.search("root writes read-only files anyway") for p in patterns)
