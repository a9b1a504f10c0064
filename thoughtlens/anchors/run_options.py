"""Checks of every option of a thought-anchors run, done before anything expensive.

`validate_config(cfg)` is called by `AnchorsConfig.__post_init__`, so building a config with `n_rollouts=0`
or `top_p=1.5` raises a one-line ConfigError at once. `check_run_options(...)` also checks the options that
are not config fields (problem text, --limit, --dtype, --batch-size, the backend's URL, the store path):
the CLI calls it first thing, so a typo costs a second, not a model load.

Ranges (and why):
  n_rollouts >= 1                     (0 rollouts leaves every importance metric undefined)
  temperature, base_temperature >= 0  (0 = greedy; the paper samples at 0.6)
  0 < top_p <= 1                      (nucleus mass; 0 would keep no token)
  max_new_tokens, base_max_new_tokens, forced_max_new_tokens >= 1
  -1 <= similarity_threshold <= 1     (a cosine similarity; the paper uses 0.8)
  kl_alpha > 0                        (KL smoothing; 0 gives infinite KL for unseen answers)
"""

from __future__ import annotations

import os
from pathlib import Path

from thoughtlens.checks import check_bool, check_choice, check_float, check_int
from thoughtlens.dtypes import DTYPE_NAMES
from thoughtlens.errors import ConfigError

ANSWER_STYLES = ("auto", "boxed", "gsm8k", "answer_is", "last_number")
# "exact" + anchors.suppression_approx.APPROX_METHODS, spelled out so that checking options needs no torch import
# (tests/anchors/test_anchors_suppression_approx.py checks the two agree).
SUPPRESSION_METHODS = ("exact", "direct_grad", "grad_loglik")


def validate_config(cfg) -> None:
    """Raise ConfigError on the first out-of-range field of an AnchorsConfig (see module docstring); the
    shared sampling fields are checked by `Sampling` itself."""
    check_int("--rollouts (n_rollouts)", cfg.n_rollouts, min=1, example=10)
    check_float("base_temperature", cfg.base_temperature, min=0, example=0.0)
    check_int("base_max_new_tokens", cfg.base_max_new_tokens, min=1, example=512)
    check_int("forced_max_new_tokens", cfg.forced_max_new_tokens, min=1, example=16)
    check_float("--threshold (similarity_threshold)", cfg.similarity_threshold, min=-1, max=1, example=0.8)
    check_float("kl_alpha", cfg.kl_alpha, min=0, min_open=True, example=0.5)
    check_bool("--forced/--no-forced (forced)", cfg.forced)
    check_bool("label_categories", cfg.label_categories)
    check_choice("answer style", cfg.answer_style, ANSWER_STYLES)
    tags = cfg.think_tags
    if not isinstance(tags, (tuple, list)) or len(tags) != 2 or not all(isinstance(t, str) and t.strip() for t in tags):
        raise ConfigError(f"think_tags must be two non-empty strings (open, close), got {tags!r}: "
                          "pass e.g. ('<think>', '</think>')")
    if not isinstance(cfg.model, str):
        raise ConfigError(f"model must be a model name (a string), got {type(cfg.model).__name__}: pass e.g. the model's path")
    check_choice("backend", cfg.backend, _backends())


def _backends() -> list[str]:
    """Backend names of the sampler registry (a registered custom backend is valid too)."""
    from thoughtlens.sample.registry import backend_names

    return sorted(backend_names())


def check_run_options(*, problem: str | None = None, problems: str | os.PathLike | None = None,
                      trace: str | os.PathLike | None = None, limit: int | None = 1,
                      dtype: str | None = None, batch_size: int | None = None, backend: str = "hf",
                      base_url: str | None = None, store: str | os.PathLike | None = None,
                      report: str | os.PathLike | None = None, **config_fields):
    """Check every option of `thoughtlens anchors run` without loading anything; return the AnchorsConfig
    built from `config_fields` (AnchorsConfig's own fields, e.g. n_rollouts=0) and `backend`.

    Raises ConfigError (bad value), DataError (a --problems/--trace file that is missing) or StoreError
    (a --store path that cannot be written) with a one-line message naming the fix.
    """
    from thoughtlens.anchors.black_box import AnchorsConfig

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
            raise ConfigError(f"--base-url {base_url!r} must start with http:// or https://, e.g. http://127.0.0.1:8000/v1")
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
        raise ConfigError("give exactly one problem source: --problem TEXT, --problems FILE or --trace FILE"
                          + (f" (got {', '.join(given)})" if given else ""))
    if problem is not None and (not isinstance(problem, str) or not problem.strip()):
        raise ConfigError("the problem text is empty: pass the question itself, e.g. --problem \"What is 2 + 3?\"")


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


def check_attention_options(*, top_k: int = 20, proximity_ignore: int = 4, max_tokens: int | None = None,
                            kl_temperature: float = 0.6, batch_size: int = 4, dtype: str | None = None,
                            suppression_method: str = "exact") -> None:
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
