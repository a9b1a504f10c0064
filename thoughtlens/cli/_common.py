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
import inspect
import logging
import os
import re
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

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
def errors_to_exit(options: dict[str, str] | None = None):
    """A ThoughtlensError becomes one red line and exit code 1 (no traceback: the message names the fix).
    `options` maps a command's parameter names to the flags the user typed (`option_flags`)."""
    try:
        yield
    except ThoughtlensError as exc:
        raise fail(as_option_error(exc, options or {})) from None


def option_flags(fn) -> dict[str, str]:
    """{parameter name: its long flag} of a typer command function, e.g. {"max_new_tokens": "--max-new-tokens"}."""
    flags = {}
    for name, param in inspect.signature(fn).parameters.items():
        default = param.default
        if isinstance(default, typer.models.OptionInfo):
            decls = [d for decl in (default.param_decls or ()) for d in decl.split("/") if d.startswith("--")]
            flags[name] = decls[0] if decls else "--" + name.replace("_", "-")
    return flags


def as_option_error(exc: Exception, options: dict[str, str]) -> Exception | str:
    """The library names a bad value by its field ("temperature must be >= 0, got -1: pass e.g. 0.6"); on the
    command line it is named by the option the user typed ("--temperature (temperature) must be ...: pass e.g.
    --temperature 0.6"), where the command has an option of that name."""
    text = str(exc)
    for param, flag in options.items():  # "pick one with run_id=..." -> "pick one with --run ..."
        text = text.replace(f" {param}=...", f" {flag} ...")
    m = re.match(r"unknown ([a-z][a-z0-9_]*) (.*)$", text)  # "unknown dtype 'fp12': ..." -> "unknown --dtype ..."
    if m and m.group(1) in options:
        return f"unknown {options[m.group(1)]} {m.group(2)}"
    m = re.match(r"([a-z][a-z0-9_]*) must be (.*?)(?:: pass e\.g\. (\S+))?$", text)
    if not m or m.group(1) not in options:
        return text if text != str(exc) else exc
    field, rest, example = m.groups()
    flag = options[field]
    return f"{flag} ({field}) must be {rest}" + (f": pass e.g. {flag} {example}" if example else "")


def command(fn):
    """Decorator for command bodies: the error policy above, and third-party chatter silenced."""
    options = option_flags(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        quiet_third_party()
        with errors_to_exit(options):
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
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.out,
        )
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
        self.bar.update(
            self.tasks[event.task],
            description=event.description or event.task,
            total=event.total,
            completed=event.completed,
            rate=rate,
        )


def existing_store(path: str) -> str:
    """A store to read must exist: RunStore would silently create an empty one."""
    if not Path(path).is_file():
        raise StoreError(f"no run store at {path}: pass the .sqlite file written by `thoughtlens anchors run`")
    return path


def pick_run(store, run_id: str | None, kinds: tuple[str, ...] = ("anchors",), *, announce: bool = True) -> str:
    """The run to use: the one given (checked), else the latest run of the first of `kinds` the store holds
    (else the store's only run). Unless the run was given, one line on stderr names it and the others."""
    from thoughtlens.store.run_store import pick_run_id

    chosen, note = pick_run_id(store, run_id, kinds, "--run")
    if announce and run_id is None:
        console().print(note, highlight=False, markup=False)
    return chosen


def exactly_one(**given) -> None:
    """Exactly one of the named options must be set (one-line error naming them otherwise)."""
    set_ = [k for k, v in given.items() if v not in (None, [], ())]
    if len(set_) != 1:
        names = " or ".join(("--" + k.replace("_", "-")) if k != "store" else "STORE" for k in given)
        raise ConfigError(f"give exactly one of {names}")


def fmt(x, digits: int = 2, missing: str = "-") -> str:
    return missing if x is None or x != x else f"{x:.{digits}f}"


# ---- engine options: declared once for every command that samples (pipeline.runtime.RuntimeOptions) ---------

MODEL = typer.Option(
    None, "--model", "-m", help="Model: hub id or local path (default: the bundled SmolLM2-135M-Instruct)."
)
BACKEND = typer.Option("hf", "--backend", help="hf (a model loaded here) | openai (servers) | vllm (in-process engine)")
BASE_URL = typer.Option(
    None,
    "--base-url",
    help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1 (repeat it for a fleet of servers).",
)
BASE_URL_FILE = typer.Option(
    None, "--base-url-file", help="openai backend: a file of server URLs, one per line (a fleet)."
)
CONCURRENCY = typer.Option(8, "--concurrency", help="openai backend: requests in flight per server.")
TENSOR_PARALLEL = typer.Option(
    1, "--tensor-parallel-size", help="vllm backend: GPUs per model (vLLM's tensor parallelism)."
)
DEVICE = typer.Option(
    "cpu", "--device", help="hf backend: cpu, cuda, cuda:1 ... (or 'auto' to spread a large model over GPUs)."
)
API_MODEL = typer.Option(
    None, "--api-model", help="openai backend: model name on the server (default: the first it lists)."
)
API_KEY_ENV = typer.Option("OPENAI_API_KEY", "--api-key-env", help="openai backend: env var holding the API key.")
BATCH_SIZE = typer.Option(16, "--batch-size", help="hf backend: rows decoded together.")
DTYPE = typer.Option(
    None,
    "--dtype",
    help="hf backend: float32 / bfloat16 (default: bf16 where the hardware is fast at it); vllm: passed on.",
)


ENGINE_OPTIONS = {  # parameter name -> (type, typer option): what `with_engine` adds to a command
    "model": (str, MODEL),
    "backend": (str, BACKEND),
    "base_url": (list[str], BASE_URL),
    "base_url_file": (str, BASE_URL_FILE),
    "api_model": (str, API_MODEL),
    "api_key_env": (str, API_KEY_ENV),
    "dtype": (str, DTYPE),
    "device": (str, DEVICE),
    "batch_size": (int, BATCH_SIZE),
    "concurrency": (int, CONCURRENCY),
    "tensor_parallel_size": (int, TENSOR_PARALLEL),
}


def runtime_options(
    *,
    backend: str = "hf",
    model: str | None = None,
    base_url: list[str] | None = None,
    base_url_file: str | None = None,
    api_model: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    dtype: str | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    concurrency: int = 8,
    tensor_parallel_size: int = 1,
):
    """The engine options of a command as a RuntimeOptions (a --base-url-file adds its servers to --base-url)."""
    from thoughtlens.pipeline.runtime import RuntimeOptions

    urls = list(base_url or [])
    if base_url_file is not None:
        from thoughtlens.sample.fleet import read_url_file

        urls += read_url_file(base_url_file)
    return RuntimeOptions(
        backend=backend,
        model=model,
        base_url=urls or None,
        api_model=api_model,
        api_key_env=api_key_env,
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        concurrency=concurrency,
        tensor_parallel_size=tensor_parallel_size,
    )


def with_engine(fn):
    """Give a command every engine option (ENGINE_OPTIONS) and pass them to it as one `engine: RuntimeOptions`.

    Typer reads a command's options from its signature, and has no option groups: the wrapper's signature is
    the command's own, with `engine` replaced by the engine options, so that every command that samples
    declares them once, here, and honours all of them."""
    sig = inspect.signature(fn)
    own = [p for name, p in sig.parameters.items() if name != "engine"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
        for name, (kind, option) in ENGINE_OPTIONS.items()
    ]
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        engine = runtime_options(**{name: kwargs.pop(name) for name in ENGINE_OPTIONS if name in kwargs})
        return fn(*args, engine=engine, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + added)
    return wrapper
