"""A pytest plugin: the run fails when a test skips for a reason not on tests/allowed_skips.txt.

A silent skip is a test that never ran: the green run it leaves behind says nothing about what it skipped.
Loaded by tests/conftest.py; $THOUGHTLENS_SKIP_ALLOWLIST names another allow-list file (the gate's own test).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ALLOWLIST = Path(__file__).with_name("allowed_skips.txt")
_unexpected: list[tuple[str, str]] = []


def allowed_patterns(path: Path | None = None) -> list[re.Pattern]:
    path = Path(os.environ.get("THOUGHTLENS_SKIP_ALLOWLIST") or path or ALLOWLIST)
    lines = path.read_text(encoding="utf-8").splitlines()
    return [re.compile(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):  # xfail carries its measured reason; it is not a skip
        reason = _reason(report)
        if not any(p.search(reason) for p in allowed_patterns()):
            _unexpected.append((report.nodeid, reason))


def pytest_collectreport(report) -> None:  # a module-level skip (pytestmark skipif, importorskip at import)
    if report.skipped:
        reason = _reason(report)
        if not any(p.search(reason) for p in allowed_patterns()):
            _unexpected.append((report.nodeid, reason))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session) -> None:
    if _unexpected and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _unexpected:
        terminalreporter.section("skips not on tests/allowed_skips.txt (the run fails)", red=True)
        for nodeid, reason in _unexpected:
            terminalreporter.line(f"{nodeid}: {reason}")
