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


def assert_close(
    got,
    want,
    *,
    dtype: torch.dtype,
    depth: float = 1.0,
    scale: float | None = None,
    safety: float = SAFETY,
    msg: str = "",
) -> None:
    """assert |got - want| <= tol(dtype, scale or the larger magnitude of the two, depth) everywhere."""
    # python floats and numpy float64 stay float64 (torch.as_tensor(float) would round them to float32 first)
    got_t = torch.as_tensor(got, dtype=torch.float64) if not torch.is_tensor(got) else got.detach().double()
    want_t = torch.as_tensor(want, dtype=torch.float64) if not torch.is_tensor(want) else want.detach().double()
    bound = tol(dtype, magnitude(got_t, want_t) if scale is None else scale, depth=depth, safety=safety)
    diff = float((got_t - want_t).abs().max()) if got_t.numel() else 0.0
    assert got_t.shape == want_t.shape, f"{msg} shapes differ: {tuple(got_t.shape)} vs {tuple(want_t.shape)}"
    assert diff <= bound, f"{msg} max |diff| {diff:.3g} > tolerance {bound:.3g} ({dtype}, depth {depth})"


def pattern_scale(q: torch.Tensor, k: torch.Tensor) -> float:
    """The magnitude to compare attention probabilities at: a probability moves by p(1 - p) <= 1/4 times its
    score's error, and a score q.k / sqrt(d) rounds at the scale of its sum of |q_i k_i| / sqrt(d); so the larger
    of 1 and a quarter of the largest such sum. q: [batch, pos, heads, d], k: [batch, pos, kv_heads, d]
    (grouped-query heads share a key)."""
    q, k = q.detach().abs().double(), k.detach().abs().double()
    k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    sums = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    return max(1.0, float(sums.max()) / 4)


def assert_rows_close(
    got, want, *, dtype: torch.dtype, depth: float = 1.0, scale=None, safety: float = SAFETY, msg: str = ""
) -> None:
    """assert_close for each vector along the last axis against its own magnitude (the larger |entry| of that
    row in either tensor, or `scale` [rows] where larger, e.g. a mean's mean |term|): activations whose rows
    differ in scale by orders of magnitude (a residual stream's first position, late layers) get each row's
    bound, not the largest row's. Rows that are NaN in one tensor must be NaN in the other (an empty sentence,
    say) and are not compared further."""
    # python floats and numpy float64 stay float64 (torch.as_tensor(float) would round them to float32 first)
    got_t = torch.as_tensor(got, dtype=torch.float64) if not torch.is_tensor(got) else got.detach().double()
    want_t = torch.as_tensor(want, dtype=torch.float64) if not torch.is_tensor(want) else want.detach().double()
    assert got_t.shape == want_t.shape, f"{msg} shapes differ: {tuple(got_t.shape)} vs {tuple(want_t.shape)}"
    nan = got_t.isnan()
    assert torch.equal(nan, want_t.isnan()), f"{msg} NaN at different entries"
    got_t, want_t = got_t.masked_fill(nan, 0.0), want_t.masked_fill(nan, 0.0)
    if not got_t.numel():
        return
    rows = torch.maximum(got_t.abs().amax(-1), want_t.abs().amax(-1))  # [rows]
    if scale is not None:
        rows = torch.maximum(rows, torch.as_tensor(scale).double().nan_to_num(0.0).expand_as(rows))
    bound = safety * eps(dtype) * rows.clamp_min(1e-30) * math.sqrt(max(depth, 1.0))
    ratio = (got_t - want_t).abs().amax(-1) / bound
    worst = int(ratio.flatten().argmax())
    diff, b = float((got_t - want_t).abs().amax(-1).flatten()[worst]), float(bound.flatten()[worst])
    assert float(ratio.max()) <= 1.0, (
        f"{msg} row {worst}: max |diff| {diff:.3g} > tolerance {b:.3g} ({dtype}, depth {depth})"
    )
