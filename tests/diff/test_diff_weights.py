"""Weight differences on a hand-built pair whose update is known: a rank-1 change of one matrix and a change
with singular values (3, 1) of another; everything else untouched."""

from __future__ import annotations

import copy
import math

import torch

from thoughtlens import HookedModel
from thoughtlens.diff.pair import ModelPair
from thoughtlens.diff.weights import effective_rank, per_layer, weight_diff
from tiny_models import tiny_hf


def test_weight_diff_of_known_updates():
    base = tiny_hf("llama")
    ft = copy.deepcopy(base)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w1 = ft.model.layers[1].mlp.down_proj.weight               # [32, 48]
        u, v = torch.randn(w1.shape[0], generator=g), torch.randn(w1.shape[1], generator=g)
        w1 += torch.outer(u, v)
        w2 = ft.model.layers[2].self_attn.q_proj.weight             # [32, 32]
        q, _ = torch.linalg.qr(torch.randn(32, 32, generator=g))
        w2 += 3 * torch.outer(q[:, 0], q[:, 1]) + 1 * torch.outer(q[:, 2], q[:, 3])
    pair = ModelPair(HookedModel(base), HookedModel(ft))
    rows = {r["name"]: r for r in weight_diff(pair)}
    r1 = rows["model.layers.1.mlp.down_proj.weight"]
    assert math.isclose(r1["norm_diff"], float(u.norm() * v.norm()), rel_tol=1e-4)
    assert math.isclose(r1["relative"], r1["norm_diff"] / float(base.model.layers[1].mlp.down_proj.weight.norm()), rel_tol=1e-6)
    assert math.isclose(r1["effective_rank"], 1.0, abs_tol=1e-3)
    assert math.isclose(r1["stable_rank"], 1.0, abs_tol=1e-3)
    r2 = rows["model.layers.2.self_attn.q_proj.weight"]
    p = [0.75, 0.25]
    assert math.isclose(r2["effective_rank"], math.exp(-sum(x * math.log(x) for x in p)), rel_tol=1e-3)
    assert math.isclose(r2["stable_rank"], (9 + 1) / 9, rel_tol=1e-3)
    assert math.isclose(r2["norm_diff"], math.sqrt(10), rel_tol=1e-4)
    changed = {n for n, r in rows.items() if r["norm_diff"] > 0}
    assert changed == {"model.layers.1.mlp.down_proj.weight", "model.layers.2.self_attn.q_proj.weight"}
    layers = per_layer(list(rows.values()))
    assert layers[0] == 0.0 and layers[1] > 0 and layers[2] > 0
    assert effective_rank(torch.zeros(3, 3)) == 0.0
