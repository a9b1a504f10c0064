"""Choosing one run or problem of a store: the library names its parameter, the CLI names its option."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from thoughtlens.cli import app
from thoughtlens.errors import StoreError
from thoughtlens.store.run_store import RunStore, pick_one


def test_library_error_names_the_parameter():
    with pytest.raises(StoreError) as info:
        pick_one("run", None, ["a", "b"], "run_id", "s.sqlite")
    assert str(info.value) == "s.sqlite has 2 runs (a, b); pick one with run_id=..."
    with pytest.raises(StoreError, match=r"no run 'c' in s.sqlite \(runs: a, b\); pass one of those as run_id=\.\.\."):
        pick_one("run", "c", ["a", "b"], "run_id", "s.sqlite")
    assert pick_one("run", None, ["a"], "run_id", "s.sqlite") == "a"


def test_cli_error_names_the_option(tmp_path):
    path = tmp_path / "two.sqlite"
    with RunStore(path) as store:
        for rid in ("run-a", "run-b"):
            store.create_run(rid, {"n_rollouts": 1})
    r = CliRunner().invoke(app, ["branches", "outcome", str(path)])
    assert r.exit_code == 1
    assert "has 2 runs (run-a, run-b); pick one with --run ..." in r.output, r.output
