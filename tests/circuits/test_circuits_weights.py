"""Per-head weights and FactoredMatrix against activations and dense linear algebra."""

from __future__ import annotations

import pytest
import torch

from thoughtlens import HookedModel
from thoughtlens.circuits import FactoredMatrix, composition_scores, head_weights, ov_circuit, qk_circuit, top_singular_tokens
from thoughtlens.errors import ThoughtlensError

from tiny_models import random_tokens, tiny_hf


@pytest.fixture(scope="module", params=["llama", "gpt2", "gpt_neox"])
def model(request):
    return HookedModel(tiny_hf(request.param))


def test_head_weights_reproduce_q_and_z_activations(model):
    """hook_q = ln1 output @ W_Q (+ bias); hook_z[h] = pattern[h] @ (ln1 output @ W_V[h] (+ bias))."""
    tokens, L = random_tokens(), 1
    names = [f"blocks.{L}.ln1.hook_normalized", f"blocks.{L}.attn.hook_q", f"blocks.{L}.attn.hook_z",
             f"blocks.{L}.attn.hook_pattern"]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    w = head_weights(model, L, fold_norm=False)
    x = cache[names[0]]
    q = torch.einsum("bpm,hmd->bphd", x, w.W_Q)
    bias_q = (cache[names[1]] - q)[0, 0]  # any projection bias is the same at every position
    torch.testing.assert_close(cache[names[1]], q + bias_q, atol=1e-4, rtol=0)
    v = torch.einsum("bpm,hmd->bhpd", x, w.W_V)
    z = cache[names[3]] @ v  # [b, h, q, d]; a v bias passes through unchanged since rows sum to 1
    bias_z = (cache[names[2]].transpose(1, 2) - z)[0, :, :1]
    torch.testing.assert_close(cache[names[2]].transpose(1, 2), z + bias_z, atol=1e-4, rtol=0)


def test_folding_the_norm_scales_input_rows():
    model = HookedModel(tiny_hf("llama"))
    raw, folded = head_weights(model, 0, fold_norm=False), head_weights(model, 0)
    w = model.hf_model.model.layers[0].input_layernorm.weight
    torch.testing.assert_close(folded.W_K, w[None, :, None] * raw.W_K)


def test_factored_matrix_matches_dense_algebra():
    g = torch.Generator().manual_seed(0)
    A, B, C = torch.randn(3, 20, 4, generator=g), torch.randn(3, 4, 20, generator=g), torch.randn(20, 20, generator=g)
    fm = FactoredMatrix(A, B)
    U, S, Vh = fm.svd()
    torch.testing.assert_close(S, torch.linalg.svdvals(A @ B)[:, :4], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(U @ torch.diag_embed(S) @ Vh, A @ B, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fm.norm(), torch.linalg.matrix_norm(A @ B), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close((fm @ C).AB, A @ B @ C, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(fm.T.AB, (A @ B).transpose(-1, -2))
    with pytest.raises(ThoughtlensError, match="do not chain"):
        FactoredMatrix(A, C)


def test_composition_scores_match_dense_formula():
    model = HookedModel(tiny_hf("llama"))
    df = composition_scores(model)
    ov0, qk2, ov1 = ov_circuit(model, 0).AB, qk_circuit(model, 2).AB, ov_circuit(model, 1).AB
    fro = torch.linalg.matrix_norm
    k = fro(ov0[1] @ qk2[3].T) / (fro(ov0[1]) * fro(qk2[3]))
    v = fro(ov0[2] @ ov1[0]) / (fro(ov0[2]) * fro(ov1[0]))
    row = lambda kind, a, b, c, d: df.query(f"kind == '{kind}' and src_layer == {a} and src_head == {b} and dst_layer == {c} and dst_head == {d}")["score"].item()  # noqa: E731
    assert row("K", 0, 1, 2, 3) == pytest.approx(float(k), rel=1e-3)
    assert row("V", 0, 2, 1, 0) == pytest.approx(float(v), rel=1e-3)
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
