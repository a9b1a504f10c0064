"""Checks of the options of `thoughtlens anchors run` and `anchors attention` that are not config fields,
done before anything expensive.

The config's own fields are checked when an `AnchorsConfig` is built (`anchors.config`). `check_run_options`
adds what only the command line has (problem text, --limit, --dtype, --batch-size, the backend's URL, the store
and report paths): the CLI calls it first thing, so a typo costs a second, not a model load.
"""

from __future__ import annotations

import os
from pathlib import Path

from thoughtlens.checks import check_choice, check_float, check_int
from thoughtlens.dtypes import DTYPE_NAMES
from thoughtlens.errors import ConfigError

# "exact" + anchors.attention.suppression_approx.APPROX_METHODS, spelled out so that checking options needs no torch
# import (tests/anchors/attention/test_anchors_suppression_approx.py checks the two agree).
SUPPRESSION_METHODS = ("exact", "direct_grad", "grad_loglik")


def check_run_options(
    *,
    problem: str | None = None,
    problems: str | os.PathLike | None = None,
    trace: str | os.PathLike | None = None,
    limit: int | None = 1,
    dtype: str | None = None,
    batch_size: int | None = None,
    backend: str = "hf",
    base_url: str | None = None,
    store: str | os.PathLike | None = None,
    report: str | os.PathLike | None = None,
    **config_fields,
):
    """Check every option of `thoughtlens anchors run` without loading anything; return the AnchorsConfig
    built from `config_fields` (AnchorsConfig's own fields, e.g. n_rollouts=0) and `backend`.

    Raises ConfigError (bad value), DataError (a --problems/--trace file that is missing) or StoreError
    (a --store path that cannot be written) with a one-line message naming the fix.
    """
    from thoughtlens.anchors.config import AnchorsConfig

    check_problem_source(problem, problems, trace)
    for flag, path in (("--problems", problems), ("--trace", trace)):
        if path is not None and not Path(path).is_file():
            from thoughtlens.errors import DataError

            raise DataError(f"{flag} {path} does not exist (or is a folder): check the path")
    if problems is not None and limit is not None:
        check_int("--limit", limit, min=1, example=5)
    if dtype is not None:
        check_choice("--dtype", dtype, DTYPE_NAMES)
    if batch_size is not None:
        check_int("--batch-size", batch_size, min=1, example=16)
    config = AnchorsConfig(backend=backend, **config_fields)
    if backend == "openai":
        if not base_url:
            raise ConfigError("the openai backend needs --base-url, e.g. --base-url http://127.0.0.1:8000/v1")
        if not str(base_url).startswith(("http://", "https://")):
            raise ConfigError(
                f"--base-url {base_url!r} must start with http:// or https://, e.g. http://127.0.0.1:8000/v1"
            )
    if store is not None:
        from thoughtlens.store.run_store import check_writable

        check_writable(store)
    if report is not None:
        _check_output_file("--report", report)
    return config


def check_problem_source(problem, problems, trace) -> None:
    """Exactly one problem source (--problem with --trace is the question of a plain-text trace), and a
    problem text that is not blank."""
    given = [name for name, v in (("--problems", problems), ("--trace", trace)) if v is not None]
    if problem is not None and trace is None:
        given.insert(0, "--problem")
    if len(given) != 1:
        raise ConfigError(
            "give exactly one problem source: --problem TEXT, --problems FILE or --trace FILE"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if problem is not None and (not isinstance(problem, str) or not problem.strip()):
        raise ConfigError('the problem text is empty: pass the question itself, e.g. --problem "What is 2 + 3?"')


def _check_output_file(flag: str, path: str | os.PathLike) -> None:
    """The folder of an output file must exist or be creatable, and be writable."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p} is a folder: pass a file path such as {p / 'report.html'}")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {p}: cannot write into {parent}: pass a path in a writable folder")


def check_attention_options(
    *,
    top_k: int = 20,
    proximity_ignore: int = 4,
    max_tokens: int | None = None,
    kl_temperature: float = 0.6,
    batch_size: int = 4,
    dtype: str | None = None,
    suppression_method: str = "exact",
) -> None:
    """Check the options of `thoughtlens anchors attention` before the model is loaded (ConfigError)."""
    check_choice("--suppression-method", suppression_method, SUPPRESSION_METHODS)
    check_int("--top-k", top_k, min=1, example=20)
    check_int("--proximity-ignore", proximity_ignore, min=1, example=4)
    if max_tokens is not None:
        check_int("--max-tokens", max_tokens, min=1, example=4096)
    check_float("--kl-temperature", kl_temperature, min=0, min_open=True, example=0.6)
    check_int("--batch-size", batch_size, min=1, example=4)
    if dtype is not None:
        check_choice("--dtype", dtype, DTYPE_NAMES)
