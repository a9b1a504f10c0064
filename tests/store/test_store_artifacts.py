"""Writers and readers agree on artifact and metric names through thoughtlens/store/artifacts.py: every
`put_artifact(run_id, "<name>", value[, problem_id])` in the package uses a declared name with the declared
scope, and every metric the importance code produces is declared (so the page and `anchors show` know it)."""

from __future__ import annotations

import ast
from pathlib import Path

import thoughtlens
from thoughtlens.anchors.importance.metrics import METRIC_COLUMNS
from thoughtlens.store.artifacts import ARTIFACT_BY_NAME, METRIC_BY_KEY, SHOW_COLUMNS

PACKAGE = Path(thoughtlens.__file__).parent
COUNTS = {"n_rollouts", "n_dissimilar"}  # bookkeeping columns, not metrics a page shows


def _put_artifact_calls():
    """(file, line, name, has_problem_arg) for every put_artifact call with a literal name."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "put_artifact":
                args = node.args
                if len(args) >= 2 and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str):
                    yield (
                        path.relative_to(PACKAGE),
                        node.lineno,
                        args[1].value,
                        len(args) >= 4 or any(k.arg == "problem_id" for k in node.keywords),
                    )


def test_every_written_artifact_is_declared_with_its_scope():
    calls = list(_put_artifact_calls())
    assert len(calls) >= 15, "the scan must see the package's writers"
    wrong = []
    for path, line, name, per_problem in calls:
        if name not in ARTIFACT_BY_NAME:
            wrong.append(f"{path}:{line} writes undeclared artifact {name!r}")
        elif (ARTIFACT_BY_NAME[name].scope == "problem") != per_problem:
            wrong.append(
                f"{path}:{line} writes {name!r} with the wrong scope (declared {ARTIFACT_BY_NAME[name].scope})"
            )
    assert not wrong, "\n".join(wrong)


def test_every_produced_metric_is_declared_and_shown():
    for key in set(METRIC_COLUMNS) - COUNTS:
        assert key in METRIC_BY_KEY, f"metric {key!r} is produced but not declared in store/artifacts.py"
    shown = [k for k, _ in SHOW_COLUMNS]
    assert shown[0] == "accuracy" and len(shown) == len(set(shown))
    assert all(k in METRIC_BY_KEY for k in shown)
