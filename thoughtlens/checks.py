"""Range and type checks for option values, raising one-line ConfigErrors that name the option and the fix.

Configs call these when they are built (`AnchorsConfig.__post_init__`, `SamplingParams.__post_init__`), so a
bad `--rollouts 0` or `--top-p 1.5` stops the CLI before any model is loaded. Each check names the option
the way the user typed it (`name`, e.g. "--rollouts (n_rollouts)") and an example of a valid value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from thoughtlens.errors import ConfigError


def check_int(
    name: str, value: object, *, min: int | None = None, max: int | None = None, example: object = None
) -> int:
    """`value` as an int in [min, max] (bounds inclusive; None = unbounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}{_eg(name, example)}")
    v = int(value)
    if (min is not None and v < min) or (max is not None and v > max):
        raise ConfigError(f"{name} must be {_range(min, max)}, got {v}{_eg(name, example)}")
    return v


def check_float(
    name: str,
    value: object,
    *,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    example: object = None,
) -> float:
    """`value` as a finite float in the range [min, max]; `min_open`/`max_open` exclude that bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be a finite number, got {value!r}{_eg(name, example)}")
    v = float(value)
    low_bad = min is not None and (v <= min if min_open else v < min)
    high_bad = max is not None and (v >= max if max_open else v > max)
    if low_bad or high_bad:
        raise ConfigError(f"{name} must be {_range(min, max, min_open, max_open)}, got {v:g}{_eg(name, example)}")
    return v


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}: use one of {', '.join(choices)}")
    return value  # type: ignore[return-value]


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}: pass e.g. True")
    return value


def check_index(name: str, value: object, n: int, what: str) -> int:
    """A 0-based index into `n` things (`what`, e.g. "layers of SmolLM2-135M"): 0 <= value < n."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer index, got {value!r}: use 0 .. {n - 1}")
    if not 0 <= int(value) < n:
        raise ConfigError(f"{name} {int(value)} does not exist: the model has {n} {what}, use 0 .. {n - 1}")
    return int(value)


def _range(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"{'<' if hi_open else '<='} {hi:g}"


def _eg(name: str, example: object) -> str:
    if example is None:
        return ""
    flag = next((w for w in name.replace("(", " ").replace(")", " ").split() if w.startswith("--")), None)
    return f": pass e.g. {flag} {example}" if flag else f": pass e.g. {example}"
