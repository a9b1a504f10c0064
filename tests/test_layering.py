"""docs/architecture.md's layering, checked on the code: each unit of the package imports only units of
lower layers (a unit is a subpackage or a top-level module). A new unit must be placed in LAYERS (and in the
doc) before it can import anything."""

from __future__ import annotations

import ast
from pathlib import Path

import thoughtlens

ROOT = Path(thoughtlens.__file__).parent
# Lowest first; units on one line are peers and must not import each other.
LAYERS = [
    ["errors"],
    ["checks", "jsonsafe", "progress", "stats"],
    ["model", "trace"],
    ["sample", "store"],
    ["anchors", "circuits", "train", "sae"],
    ["represent", "groundtruth", "diff"],
    ["report"],
    ["pipeline"],
    ["cli"],
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "thoughtlens" else [])
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "thoughtlens" and len(parts) > 1:
                yield parts[1], node.lineno


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert not units - set(RANK), f"place {sorted(units - set(RANK))} in LAYERS and docs/architecture.md"


def test_imports_go_down_the_layers():
    bad = []
    for path in ROOT.rglob("*.py"):
        unit = _unit(path)
        if unit == "__init__":
            continue  # the package's lazy top-level names
        for target, line in _imports(path):
            if target != unit and target in RANK and RANK[target] >= RANK[unit]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({unit}) imports {target}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)
