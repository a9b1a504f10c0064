"""Streamed sentence x sentence attention vs an explicit computation from HF eager `attentions`."""

from __future__ import annotations

import numerics
import numpy as np
import pytest
import torch
from tiny_models import random_tokens, tiny_pair
from torch import nn

from thoughtlens import HookedModel
from thoughtlens.anchors.attention.sentence_attention import sentence_attention
from thoughtlens.errors import HookError, TraceError
from thoughtlens.model.adapters import get_module
from thoughtlens.model.attention import AttentionCall

# Token 0..2 are "prompt" (in no sentence); sentence 1 is empty; tokens 22-23 and 38-39 are in no sentence.
RANGES = [(3, 8), (8, 8), (9, 15), (15, 22), (24, 30), (30, 38)]


def _pattern_tol(model: HookedModel, tokens: torch.Tensor) -> float:
    """Two float32 computations of attention probabilities (streamed rows vs HF eager) differ by rounding at the
    scale of their scores (numerics.pattern_scale), growing with the layers before the pattern."""
    _, cache = model.run_with_cache(tokens[None], names_filter=lambda n: n.endswith(("hook_q", "hook_k")))
    n = model.cfg.n_layers
    scale = max(numerics.pattern_scale(cache["q", L], cache["k", L]) for L in range(n))
    return numerics.tol(torch.float32, scale, depth=n)


def _block_means(attentions, ranges) -> np.ndarray:
    """Explicit reference: [layers, heads, S, S] block means of the full eager patterns."""
    n = len(ranges)
    out = np.full((len(attentions), attentions[0].shape[1], n, n), np.nan)
    for L, pattern in enumerate(attentions):
        p = pattern[0].detach().double().numpy()  # [heads, T, T]
        for qi, (a, b) in enumerate(ranges):
            for ki, (c, d) in enumerate(ranges):
                if b > a and d > c:
                    out[L, :, qi, ki] = p[:, a:b, c:d].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_streamed_matrix_equals_eager_block_means(arch):
    hf, ref = tiny_pair(arch)
    model = HookedModel(hf)
    tokens = random_tokens(1, 40)[0]
    atol = _pattern_tol(model, tokens)
    got = sentence_attention(model, tokens, RANGES, chunk_rows=4)  # small chunks: several per layer
    with torch.no_grad():
        want = _block_means(ref(tokens[None], output_attentions=True).attentions, RANGES)
    assert got.shape == (3, 4, 6, 6)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # NaN row and column of the empty sentence
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, equal_nan=True)
    assert np.all(got[..., 0, 2:] == 0)  # causal: sentence 0 never sees later sentences


def test_layer_subset_and_model_state_untouched():
    hf, ref = tiny_pair("llama")
    model = HookedModel(hf)
    tokens = random_tokens(1, 40)[0]
    atol = _pattern_tol(model, tokens)
    got = sentence_attention(model, tokens, RANGES, layers=[2])
    with torch.no_grad():
        want = _block_means(ref(tokens[None], output_attentions=True).attentions, RANGES)[2:]
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, equal_nan=True)
    assert all(model.attention_control(L).idle for L in range(3))  # observers removed afterwards


def test_streaming_never_asks_for_more_than_chunk_rows(monkeypatch):
    seen = []
    original = AttentionCall.pattern_rows

    def spy(self, rows):
        out = original(self, rows)
        seen.append(out.shape)
        return out

    monkeypatch.setattr(AttentionCall, "pattern_rows", spy)
    hf, _ = tiny_pair("llama")
    sentence_attention(HookedModel(hf), random_tokens(1, 40)[0], RANGES, chunk_rows=5)
    assert seen and max(s[2] for s in seen) <= 5  # [batch, head, rows, k]
    # Rows 0-2 (prompt) and 38-39 (after the last sentence) are never computed; 3..37 in chunks of 5 = 7 per layer.
    assert len(seen) == 3 * 7


# ---- bad input ----------------------------------------------------------------------------------------


def test_plain_module_cannot_be_intercepted():
    with pytest.raises(HookError, match="HookedModel"):
        sentence_attention(nn.Linear(2, 2), torch.zeros(5, dtype=torch.long), [(0, 2)])


def test_unwrapped_hf_model_cannot_be_intercepted():
    hf, _ = tiny_pair("llama")
    with pytest.raises(HookError, match="cannot be intercepted"):
        sentence_attention(hf, torch.zeros(5, dtype=torch.long), [(0, 2)])


def test_attention_module_without_control_is_refused():
    hf, _ = tiny_pair("llama")
    model = HookedModel(hf)
    attn = get_module(get_module(hf, model.adapter.layers)[1], model.adapter.attn)
    del attn._thoughtlens_ctl
    with pytest.raises(HookError, match="layer 1's attention has no thoughtlens AttentionControl"):
        sentence_attention(model, torch.zeros(5, dtype=torch.long), [(0, 2)])


def test_attention_bypassing_the_interface_is_detected():
    hf, _ = tiny_pair("llama")
    model = HookedModel(hf)
    hf.set_attn_implementation("eager")  # attention no longer routed through thoughtlens' function
    with pytest.raises(HookError, match="not intercepted"):
        sentence_attention(model, random_tokens(1, 10)[0], [(0, 4), (4, 9)])


def test_trace_longer_than_context_names_the_limit_and_fix():
    hf, _ = tiny_pair("llama")  # max_position_embeddings = 128
    model = HookedModel(hf)
    with pytest.raises(TraceError, match=r"130 tokens, more than .* context of 128: pass max_tokens=128"):
        sentence_attention(model, torch.zeros(130, dtype=torch.long), [(0, 10), (10, 130)])


@pytest.mark.parametrize(
    "ranges, match",
    [
        ([(0, 50)], "outside the 40 tokens"),
        ([(0, 10), (5, 20)], "sorted and non-overlapping"),
        ([], "no sentences"),
        ([(3, 3), (5, 5)], "zero tokens"),
    ],
)
def test_bad_token_ranges(ranges, match):
    hf, _ = tiny_pair("llama")
    with pytest.raises(TraceError, match=match):
        sentence_attention(HookedModel(hf), random_tokens(1, 40)[0], ranges)


def test_batch_of_sequences_is_refused():
    hf, _ = tiny_pair("llama")
    with pytest.raises(TraceError, match="one sequence"):
        sentence_attention(HookedModel(hf), random_tokens(2, 10), [(0, 4)])
