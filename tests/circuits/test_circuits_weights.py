"""Per-head weights and FactoredMatrix against activations and dense linear algebra."""

from __future__ import annotations

import numerics
import pytest
import torch
from tiny_models import random_tokens, tiny_hf

from thoughtlens import HookedModel
from thoughtlens.circuits import (
    FactoredMatrix,
    composition_scores,
    head_weights,
    ov_circuit,
    qk_circuit,
    top_singular_tokens,
)
from thoughtlens.errors import ThoughtlensError


@pytest.fixture(scope="module", params=["llama", "gpt2", "gpt_neox"])
def model(request):
    return HookedModel(tiny_hf(request.param))


def test_head_weights_reproduce_q_and_z_activations(model):
    """hook_q = ln1 output @ W_Q (+ bias); hook_z[h] = pattern[h] @ (ln1 output @ W_V[h] (+ bias))."""
    tokens, L = random_tokens(), 1
    names = [
        f"blocks.{L}.ln1.hook_normalized",
        f"blocks.{L}.attn.hook_q",
        f"blocks.{L}.attn.hook_z",
        f"blocks.{L}.attn.hook_pattern",
    ]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    w = head_weights(model, L, fold_norm=False)
    x = cache[names[0]]
    q = torch.einsum("bpm,hmd->bphd", x, w.W_Q)
    bias_q = (cache[names[1]] - q)[0, 0]  # any projection bias is the same at every position
    # one product (and the bias read back at position 0): rounding at the sum of its |terms|, plus the bias
    scale = numerics.magnitude(torch.einsum("bpm,hmd->bphd", x.abs(), w.W_Q.abs())) + numerics.magnitude(bias_q)
    numerics.assert_close(cache[names[1]], q + bias_q, dtype=torch.float32, depth=2, scale=scale)
    v = torch.einsum("bpm,hmd->bhpd", x, w.W_V)
    z = cache[names[3]] @ v  # [b, h, q, d]; a v bias passes through unchanged since rows sum to 1
    bias_z = (cache[names[2]].transpose(1, 2) - z)[0, :, :1]
    # two products (x W_V, then the pattern's average of it), plus the bias read back
    v_abs = torch.einsum("bpm,hmd->bhpd", x.abs(), w.W_V.abs())
    scale = numerics.magnitude(cache[names[3]] @ v_abs) + numerics.magnitude(bias_z)
    numerics.assert_close(cache[names[2]].transpose(1, 2), z + bias_z, dtype=torch.float32, depth=3, scale=scale)


def test_folding_the_norm_scales_input_rows():
    model = HookedModel(tiny_hf("llama"))
    raw, folded = head_weights(model, 0, fold_norm=False), head_weights(model, 0)
    w = model.hf_model.model.layers[0].input_layernorm.weight
    torch.testing.assert_close(folded.W_K, w[None, :, None] * raw.W_K, atol=0, rtol=0)  # the same product


def test_factored_matrix_matches_dense_algebra():
    g = torch.Generator().manual_seed(0)
    A, B, C = torch.randn(3, 20, 4, generator=g), torch.randn(3, 4, 20, generator=g), torch.randn(20, 20, generator=g)
    fm = FactoredMatrix(A, B)
    U, S, Vh = fm.svd()
    # float32 linear algebra on 20 x 20 matrices (reductions of up to 20 terms), each at its own size: singular
    # values and norms at the largest singular value, products at the sum of their |terms|
    AB_abs = A.abs() @ B.abs()
    numerics.assert_close(S, torch.linalg.svdvals(A @ B)[:, :4], dtype=torch.float32, depth=20)
    numerics.assert_close(
        U @ torch.diag_embed(S) @ Vh,
        A @ B,
        dtype=torch.float32,
        depth=20,
        scale=max(numerics.magnitude(S), numerics.magnitude(AB_abs)),
    )
    numerics.assert_close(fm.norm(), torch.linalg.matrix_norm(A @ B), dtype=torch.float32, depth=20)
    numerics.assert_close(
        (fm @ C).AB, A @ B @ C, dtype=torch.float32, depth=20, scale=numerics.magnitude(AB_abs @ C.abs())
    )
    torch.testing.assert_close(fm.T.AB, (A @ B).transpose(-1, -2), atol=0, rtol=0)  # B^T A^T: the same sums
    with pytest.raises(ThoughtlensError, match="do not chain"):
        FactoredMatrix(A, C)


def test_composition_scores_match_dense_formula():
    model = HookedModel(tiny_hf("llama"))
    df = composition_scores(model)
    ov0, qk2, ov1 = ov_circuit(model, 0).AB, qk_circuit(model, 2).AB, ov_circuit(model, 1).AB
    fro = torch.linalg.matrix_norm
    k = fro(ov0[1] @ qk2[3].T) / (fro(ov0[1]) * fro(qk2[3]))
    v = fro(ov0[2] @ ov1[0]) / (fro(ov0[2]) * fro(ov1[0]))

    def row(kind, a, b, c, d):
        query = f"kind == '{kind}' and src_layer == {a} and src_head == {b} and dst_layer == {c} and dst_head == {d}"
        return df.query(query)["score"].item()

    # scores (<= 1): ratios of Frobenius norms of products over d_model, factored vs dense
    d = model.cfg.d_model
    numerics.assert_close(row("K", 0, 1, 2, 3), k, dtype=torch.float32, depth=d, scale=1.0)
    numerics.assert_close(row("V", 0, 2, 1, 0), v, dtype=torch.float32, depth=d, scale=1.0)
    n, h = model.cfg.n_layers, model.cfg.n_heads
    assert len(df) == 3 * h * h * n * (n - 1) // 2


def test_top_singular_tokens_and_bad_input():
    model = HookedModel(tiny_hf("llama"))
    df = top_singular_tokens(model, 1, 0, k=2, n_tokens=5)
    assert list(df["side"]) == ["in", "out", "in", "out"] and all(len(t) == 5 for t in df["tokens"])
    assert df["singular_value"].is_monotonic_decreasing
    with pytest.raises(ThoughtlensError, match="'ov' or 'qk'"):
        top_singular_tokens(model, 1, 0, circuit="xy")
    with pytest.raises(ThoughtlensError, match="out of range"):
        head_weights(model, 5)
