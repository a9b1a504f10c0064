"""What every command shares: the consoles, one error policy, progress rendering, store opening, run picking.

Vocabulary shared by all commands (keep it this way when adding one):
  STORE (argument)   a run store to read (results are written back into it)
  --store PATH       the run store to write into
  --run ID           a run inside a store;  --problem-id ID: a problem inside a run
  --model, --dtype, --device   which model to load and how
  --output / -o      a file to write (page, table)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from thoughtlens.errors import ConfigError, StoreError, ThoughtlensError
from thoughtlens.progress import ProgressEvent


def console() -> Console:
    """stderr: progress, notes, errors (soft_wrap keeps each error on one line)."""
    return Console(stderr=True, soft_wrap=True)


def stdout(width: int | None = None) -> Console:
    """stdout: results (tables), never squeezed below `width` columns."""
    return Console(soft_wrap=False, width=max(Console().width, width) if width else None)


def fail(exc: Exception, code: int = 1) -> typer.Exit:
    console().print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def errors_to_exit():
    """A ThoughtlensError becomes one red line and exit code 1 (no traceback: the message names the fix)."""
    try:
        yield
    except ThoughtlensError as exc:
        raise fail(exc) from None


def command(fn):
    """Decorator for command bodies: the error policy above, and third-party chatter silenced."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        quiet_third_party()
        with errors_to_exit():
            return fn(*args, **kwargs)

    return wrapper


def quiet_third_party() -> None:
    """thoughtlens's own progress and results only: no HF weight-loading bars, deprecation warnings or
    log lines between our progress bars. Done in the CLI only; the library leaves a user's settings alone."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|torch|sentence_transformers)")
    for name in ("transformers", "sentence_transformers", "httpx", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.suppress(Exception):
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()


class RichProgress:
    """Renders thoughtlens.progress events as one live rich display: a bar per task, notes as lines above."""

    def __init__(self, out: Console | None = None):
        self.out = out or console()
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=self.out)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "RichProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, event: ProgressEvent) -> None:
        if event.note is not None:
            self.bar.console.print(f"[yellow]{event.note}[/]", highlight=False)
            return
        rate = f"{event.tokens_per_s:,.0f} tok/s" if event.tokens else ""
        if event.task not in self.tasks:
            self.tasks[event.task] = self.bar.add_task(event.description or event.task, total=event.total, rate=rate)
        self.bar.update(self.tasks[event.task], description=event.description or event.task, total=event.total,
                        completed=event.completed, rate=rate)


def existing_store(path: str) -> str:
    """A store to read must exist: RunStore would silently create an empty one."""
    if not Path(path).is_file():
        raise StoreError(f"no run store at {path}: pass the .sqlite file written by `thoughtlens anchors run`")
    return path


def pick_run(store, run_id: str | None) -> str:
    """The run to use: the one given (checked), or the store's only run."""
    from thoughtlens.store.run_store import pick_one

    return pick_one("run", run_id, [r["run_id"] for r in store.runs()], "--run", str(store.path))


def exactly_one(**given) -> None:
    """Exactly one of the named options must be set (one-line error naming them otherwise)."""
    set_ = [k for k, v in given.items() if v not in (None, [], ())]
    if len(set_) != 1:
        names = " or ".join(("--" + k.replace("_", "-")) if k != "store" else "STORE" for k in given)
        raise ConfigError(f"give exactly one of {names}")


def fmt(x, digits: int = 2, missing: str = "-") -> str:
    return missing if x is None or x != x else f"{x:.{digits}f}"
