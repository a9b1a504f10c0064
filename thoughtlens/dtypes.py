"""The one dtype table: the names a user may write for a dtype, and the torch dtype each means.

Options are checked against it before torch is imported (`canonical_dtype`), so a typo in `--dtype` costs a
second, not a model load; `as_torch_dtype` turns a checked name into the torch dtype.
"""

from __future__ import annotations

from typing import Any

from thoughtlens.errors import ConfigError

# name as written -> canonical name (torch's attribute); "torch.float32" (SAELens configs) is accepted too.
DTYPE_NAMES: dict[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "float64": "float64",
    "fp64": "float64",
}


def canonical_dtype(name: str, *, error: type[Exception] = ConfigError) -> str:
    """'bf16' / 'torch.bfloat16' / 'bfloat16' -> 'bfloat16'; anything else raises `error` naming the choices."""
    key = str(name).removeprefix("torch.")
    if key not in DTYPE_NAMES:
        raise error(f"unknown dtype {name!r}: use one of {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[key]


def as_torch_dtype(dtype: Any, *, error: type[Exception] = ConfigError):
    """None and torch dtypes pass through; a name from DTYPE_NAMES becomes its torch dtype."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, canonical_dtype(dtype, error=error))
