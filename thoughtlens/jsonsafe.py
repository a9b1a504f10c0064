"""JSON-safe numbers: strict JSON has no NaN or infinity, so every writer of JSON (store artifacts, the page)
turns them into null the same way, here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def finite_or_none(x: Any) -> float | None:
    """float(x), or None for None / NaN / +-inf (and for pandas' NA)."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def json_safe(value: Any) -> Any:
    """`value` with numpy arrays and scalars turned into lists and Python numbers, and every non-finite float
    into None, recursively through dicts, lists and tuples."""
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite_or_none(value)
    return value
