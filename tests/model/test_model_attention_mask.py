"""additive_mask (SDPA mask -> eager additive mask) in every float dtype: float64 used to overflow because the
minimum was built as a float32 Python scalar first."""

from __future__ import annotations

import pytest
import torch

from thoughtlens.model.attention import additive_mask


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_causal_mask_in_every_dtype(dtype):
    q, k = torch.zeros(1, 1, 3, 2, dtype=dtype), torch.zeros(1, 1, 5, 2, dtype=dtype)
    mask = additive_mask(None, q, k)[0, 0]
    lo = torch.finfo(dtype).min
    # Independent: query row r (absolute position 2 + r) sees keys 0 .. 2 + r.
    expected = torch.tensor([[0.0 if j <= 2 + r else lo for j in range(5)] for r in range(3)], dtype=torch.float64)
    assert mask.dtype == dtype
    assert torch.equal(mask.to(torch.float64), expected.to(dtype).to(torch.float64))
    bool_mask = additive_mask(torch.tensor([[[[True, False, True, True, False]] * 3]]), q, k)
    assert bool_mask.dtype == dtype and bool_mask[0, 0, 0, 1] == lo and bool_mask[0, 0, 0, 0] == 0
