"""`thoughtlens ...`: the command line, a thin shell over the library.

Commands parse options, call the library and render its progress events and results with rich; nothing here
decides what is computed. One module per feature (`anchors.py`, `report.py`, `circuits.py`, ...), shared
console, error policy and option vocabulary in `_common.py`.
"""

from __future__ import annotations

import importlib

import typer

from thoughtlens.cli import _common as c

app = typer.Typer(
    name="thoughtlens",
    help="Mechanistic interpretability for reasoning models.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


# ---- core: inspect, demo -------------------------------------------------------------------------


@app.command("inspect")
@c.command
def inspect(
    model: str = typer.Argument(
        None, help="Hub id, local directory or .gguf file (default: the bundled SmolLM2-135M-Instruct)."
    ),
    dtype: str = typer.Option(None, help="float32 / bfloat16 (default: bf16 where the CPU is fast at it)."),
    all_layers: bool = typer.Option(False, "--all", help="List the hooks of every layer, not just layer 0."),
) -> None:
    """Print a model's architecture, hook names and their shapes."""
    from rich.table import Table

    from thoughtlens.model.load import load

    with c.console().status("loading model"):
        m = load(model, dtype=dtype)
    out = c.stdout()
    out.print(repr(m))
    shapes = m.hook_shapes(n_pos=4)
    table = Table(title=f"hook points for batch=1, pos=4 ({len(shapes)} in all)")
    table.add_column("hook")
    table.add_column("shape")
    for name, shape in shapes.items():
        layer = name.split(".")[1] if name.startswith("blocks.") else None
        if all_layers or layer in (None, "0"):
            table.add_row(name, str(shape))
    if not all_layers and m.cfg.n_layers > 1:
        table.add_row(f"blocks.1 .. blocks.{m.cfg.n_layers - 1}", "same as blocks.0 (use --all)")
    out.print(table)


@app.command("demo")
@c.command
def demo(
    rollouts: int = typer.Option(None, help="Rollouts per prefix (default: the demo's own)."),
    max_new_tokens: int = typer.Option(None, help="Token budget per rollout (default: the demo's own)."),
    store: str = typer.Option("runs/demo.sqlite", "--store", help="Run store to write (resumes if present)."),
    output: str = typer.Option("runs/demo.html", "-o", "--output", help="Report page to write."),
) -> None:
    """The main job on the bundled model: thought anchors for one small problem, then its report page."""
    from thoughtlens.cli.anchors import run_pipeline
    from thoughtlens.pipeline.demo import demo_config, demo_problems

    run_pipeline(
        demo_config(rollouts, max_new_tokens), make_todo=demo_problems, store=store, report=output, attention=True
    )


# ---- command groups and commands that live in their own modules ----------------------------------


_COMMANDS: list[tuple[str, str, str]] = [  # (module in thoughtlens.cli, function, command name)
    ("report", "report", "report"),
    ("circuits", "heads", "heads"),
]
_GROUPS: list[tuple[str, str]] = [
    ("anchors", "anchors"),
    ("groundtruth", "ground-truth"),
    ("sae", "sae"),
    ("represent", "represent"),
    ("branches", "branches"),
    ("diff", "diff"),
]  # (module in thoughtlens.cli, command name)


def _mount() -> None:
    for module, fn, name in _COMMANDS:
        app.command(name)(getattr(importlib.import_module(f"thoughtlens.cli.{module}"), fn))
    for module, name in _GROUPS:
        app.add_typer(importlib.import_module(f"thoughtlens.cli.{module}").app, name=name)


_mount()


if __name__ == "__main__":
    app()
