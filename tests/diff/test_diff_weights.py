"""Weight differences on a hand-built pair whose update is known: a rank-1 change of one matrix and a change
with singular values (3, 1) of another; everything else untouched."""

from __future__ import annotations

import copy
import math

import numerics
import torch
from tiny_models import tiny_hf

from thoughtlens import HookedModel
from thoughtlens.diff.pair import ModelPair
from thoughtlens.diff.weight_diff import effective_rank, per_layer, weight_diff


def _spectrum_slack(noise: float, smallest: float, k: int) -> float:
    """Relative slack of a rank measure of a planted update whose smallest singular value is `smallest`, read from
    a float32 difference carrying rounding noise of Frobenius norm <= `noise`: each of the k singular values moves
    (or appears) by at most q = noise / smallest of the spectrum, adding at most q (1 + log 1/q) to its entropy."""
    q = noise / smallest
    return k * q * (1 + math.log(1 / q))


def test_weight_diff_of_known_updates():
    base = tiny_hf("llama")
    ft = copy.deepcopy(base)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w1 = ft.model.layers[1].mlp.down_proj.weight  # [32, 48]
        u, v = torch.randn(w1.shape[0], generator=g), torch.randn(w1.shape[1], generator=g)
        w1 += torch.outer(u, v)
        w2 = ft.model.layers[2].self_attn.q_proj.weight  # [32, 32]
        q, _ = torch.linalg.qr(torch.randn(32, 32, generator=g))
        w2 += 3 * torch.outer(q[:, 0], q[:, 1]) + 1 * torch.outer(q[:, 2], q[:, 3])
    pair = ModelPair(HookedModel(base), HookedModel(ft))
    rows = {r["name"]: r for r in weight_diff(pair)}
    # (base + update) - base in float32 rounds each entry at |base| + |update|: a noise of Frobenius norm at most
    # eps (||base|| + ||update||); a norm of it is then one more rounding
    r1 = rows["model.layers.1.mlp.down_proj.weight"]
    base1, norm1 = float(base.model.layers[1].mlp.down_proj.weight.norm()), float(u.norm() * v.norm())
    numerics.assert_close(r1["norm_diff"], norm1, dtype=torch.float32, depth=2, scale=base1 + norm1)
    numerics.assert_close(r1["relative"], r1["norm_diff"] / base1, dtype=torch.float32, depth=2)  # a ratio of norms
    slack1 = _spectrum_slack(numerics.tol(torch.float32, base1 + norm1), norm1, min(w1.shape))
    assert abs(r1["effective_rank"] - 1.0) <= slack1 and abs(r1["stable_rank"] - 1.0) <= slack1
    r2 = rows["model.layers.2.self_attn.q_proj.weight"]
    base2 = float(base.model.layers[2].self_attn.q_proj.weight.norm())
    slack2 = _spectrum_slack(numerics.tol(torch.float32, base2 + math.sqrt(10)), 1.0, min(w2.shape))
    p = [0.75, 0.25]
    want = math.exp(-sum(x * math.log(x) for x in p))
    assert abs(r2["effective_rank"] - want) <= want * slack2
    assert abs(r2["stable_rank"] - (9 + 1) / 9) <= (9 + 1) / 9 * slack2
    numerics.assert_close(r2["norm_diff"], math.sqrt(10), dtype=torch.float32, depth=2, scale=base2 + math.sqrt(10))
    changed = {n for n, r in rows.items() if r["norm_diff"] > 0}
    assert changed == {"model.layers.1.mlp.down_proj.weight", "model.layers.2.self_attn.q_proj.weight"}
    layers = per_layer(list(rows.values()))
    assert layers[0] == 0.0 and layers[1] > 0 and layers[2] > 0
    assert effective_rank(torch.zeros(3, 3)) == 0.0
