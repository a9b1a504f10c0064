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
    ["errors", "lazy", "version"],
    ["checks", "dtypes", "files", "jsonsafe", "progress", "stats"],
    ["model", "trace"],
    ["sample", "store"],
    ["anchors", "circuits", "train", "sae"],
    ["represent", "groundtruth", "diff"],
    ["report"],
    ["pipeline"],
    ["cli"],
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
TOP = "thoughtlens (the top-level package)"
RANK[TOP] = len(LAYERS)  # above the CLI: nothing inside the package may import it


def _unit(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module == "thoughtlens":  # a unit, or one of the lazy names
            names = [f"thoughtlens.{a.name}" if a.name in RANK else "thoughtlens" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "thoughtlens" and len(parts) > 1:
                yield parts[1], node.lineno
            elif name == "thoughtlens":  # the top-level package: its lazy names reach every layer
                yield TOP, node.lineno


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


def test_no_module_imports_another_modules_private_names():
    """`from thoughtlens.x import _name` (or `x._name` on an imported module) from another module couples the two
    through what one of them marks as its own; make the name public or move the code. A package's private
    module imported by its own package (`from thoughtlens.cli import _common`) is that package's business."""
    bad = []
    for path in ROOT.rglob("*.py"):
        module = ".".join(("thoughtlens", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("thoughtlens"):
                for a in node.names:
                    private = a.name.startswith("_") and not a.name.startswith("__")
                    own_package = node.module in (module, module.rsplit(".", 1)[0])
                    if private and not own_package:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{a.name}")
                    modules[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                modules.update({(a.asname or a.name): a.name for a in node.names if a.name.startswith("thoughtlens")})
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert not bad, "private names used across modules:\n" + "\n".join(sorted(bad))


def _module_graph() -> dict[str, set[str]]:
    """module -> the thoughtlens modules it imports (at the top or inside a function; package inits excluded as
    targets when a submodule is named, since `from a.b import c` runs a/__init__ and a/b, not a/b/c)."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("thoughtlens", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("thoughtlens"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    targets.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in modules)
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def test_no_import_cycles():
    """No module imports, even inside a function, a module that imports it back (directly or through others).
    Package __init__ files only re-export names lazily, so edges into them are left out."""
    graph = _module_graph()
    inits = {m for m, p in ((m, ROOT) for m in graph) if (ROOT / Path(*m.split(".")[1:]) / "__init__.py").is_file()}
    graph = {m: {t for t in ts if t not in inits} for m, ts in graph.items() if m not in inits}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for t in sorted(graph.get(node, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
