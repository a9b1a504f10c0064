"""Tolerances derived from the numerics, not from one machine.

Two computations of the same quantity in floating point (batched vs one by one, SDPA vs eager, a KV cache vs a
full forward, thoughtlens vs plain Hugging Face) differ only by rounding. Each operation rounds with a relative
error of at most eps/2; a dot product or sum rounds in an order that the BLAS kernel picks, and that order
changes from one CPU family to another (AVX2 vs AVX-512/AMX kernels). What does not change is the scale of the
error: a small multiple of eps(dtype) times the magnitude of what is compared, growing with the number of
rounding stages it went through (a model's layers). So every tolerance here is

    tol = safety * eps(dtype) * magnitude * sqrt(depth)

with `magnitude` the scale of the compared values (for a reduction: the sum of the absolute terms), `depth`
the number of rounding stages between the inputs and the compared value, and `safety` (default 16) the slack
for the constants of the error bound. A real error (a shifted position, a wrong mask, a missing scale) moves a
value by a sizeable fraction of its magnitude, orders of magnitude above this.
"""

from __future__ import annotations

import math

import torch

SAFETY = 16.0


def eps(dtype: torch.dtype) -> float:
    """Machine epsilon of a floating dtype (float32: 1.19e-7, bfloat16: 7.8e-3, float16: 9.8e-4)."""
    return float(torch.finfo(dtype).eps)


def tol(dtype: torch.dtype, magnitude: float, *, depth: float = 1.0, safety: float = SAFETY) -> float:
    """Absolute tolerance for comparing two computations of values of size `magnitude` in `dtype`."""
    return safety * eps(dtype) * float(magnitude) * math.sqrt(max(depth, 1.0))


def magnitude(*tensors) -> float:
    """The scale of the compared values: the largest absolute entry over all tensors (at least 1e-30)."""
    m = 0.0
    for t in tensors:
        t = torch.as_tensor(t)
        if t.numel():
            m = max(m, float(t.detach().abs().max()))
    return max(m, 1e-30)


def assert_close(got, want, *, dtype: torch.dtype, depth: float = 1.0, scale: float | None = None,
                 safety: float = SAFETY, msg: str = "") -> None:
    """assert |got - want| <= tol(dtype, scale or the larger magnitude of the two, depth) everywhere."""
    got_t = torch.as_tensor(got).detach().double()
    want_t = torch.as_tensor(want).detach().double()
    bound = tol(dtype, magnitude(got_t, want_t) if scale is None else scale, depth=depth, safety=safety)
    diff = float((got_t - want_t).abs().max()) if got_t.numel() else 0.0
    assert got_t.shape == want_t.shape, f"{msg} shapes differ: {tuple(got_t.shape)} vs {tuple(want_t.shape)}"
    assert diff <= bound, f"{msg} max |diff| {diff:.3g} > tolerance {bound:.3g} ({dtype}, depth {depth})"
