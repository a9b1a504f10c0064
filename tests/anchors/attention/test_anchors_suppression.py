"""Attention suppression with KV-cache reuse vs full eager forwards with an explicit additive mask.

These tests check the machinery (cache reuse, batches, head subsets) on the plain mean KL
(kl_reduction="raw", the pre-1.0 reduction); the paper's reduction, now the default, is checked against
a re-implementation of their code in tests/anchors/attention/test_anchors_suppression_paper.py."""

from __future__ import annotations

import copy

import numerics
import numpy as np
import pytest
import torch
from tiny_models import random_tokens, tiny_pair
from torch import nn

from thoughtlens import HookedModel
from thoughtlens.anchors.attention.suppression import suppression_matrix
from thoughtlens.errors import ConfigError, HookError, TraceError

RANGES = [(3, 8), (8, 8), (9, 15), (15, 22), (24, 30), (30, 38)]  # sentence 1 has no tokens
TEMPERATURE = 0.6


def _reference(logits_fn, ranges, temperature: float) -> tuple[np.ndarray, float]:
    """Naive S+1 full passes. logits_fn(hidden_keys: list[int] | None) -> logits [T, vocab].

    Sentence k's tokens [c, d) are predicted by the logits at positions [c - 1, d - 1). Returns the matrix and
    the largest |logits / T| of all passes (the scale of the log-probs the KL is computed from).
    """
    scale = 0.0

    def logp(hidden):
        nonlocal scale
        logits = logits_fn(hidden).double() / temperature
        scale = max(scale, numerics.magnitude(logits))
        return torch.log_softmax(logits, dim=-1)

    base = logp(None)
    out = np.full((len(ranges), len(ranges)), np.nan)
    for j, (a, b) in enumerate(ranges):
        if b == a:
            continue
        sup = logp(list(range(a, b)))
        kl = (base.exp() * (base - sup)).sum(-1)  # [T]: KL(base || suppressed) at each position
        for k, (c, d) in enumerate(ranges):
            if k > j and d > c:
                out[j, k] = kl[c - 1 : d - 1].mean().item()
    return out, scale


def _eager_masked_logits(ref, tokens: torch.Tensor):
    """Full eager forward with an explicit additive 4D mask: causal, plus the hidden keys at finfo.min."""
    n = tokens.shape[0]
    lowest = torch.finfo(torch.float32).min

    def logits(hidden):
        mask = torch.full((n, n), lowest).triu(1)
        if hidden is not None:
            mask[:, hidden] = lowest
        with torch.no_grad():
            return ref(tokens[None], attention_mask=mask[None, None]).logits[0]

    return logits


def _assert_kl_close(got: np.ndarray, want: np.ndarray, scale: float, n_layers: int) -> None:
    """KL(P || Q) moves by at most about max |d log p| + max |d log q|, and a float32 log-prob carries the
    rounding of its logits: eps(float32) x |logits / T|, growing with the layers the logits went through."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    bound = numerics.tol(torch.float32, scale, depth=n_layers)
    np.testing.assert_allclose(got, want, rtol=0, atol=bound, equal_nan=True)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt_neox"])
def test_cache_reuse_equals_full_eager_with_additive_mask(arch):
    hf, ref = tiny_pair(arch)
    tokens = random_tokens(1, 40)[0]
    # batch_size 2 and 4-position chunks: several batches, rows with different starts, chunked KL.
    got = suppression_matrix(
        HookedModel(hf), tokens, RANGES, temperature=TEMPERATURE, batch_size=2, chunk_positions=4, kl_reduction="raw"
    )
    want, scale = _reference(_eager_masked_logits(ref, tokens), RANGES, TEMPERATURE)
    _assert_kl_close(got, want, scale, hf.config.num_hidden_layers)
    assert np.nanmin(got) > 1e-4  # the effects are real, not all ~0


def test_defined_only_below_the_diagonal_pattern():
    hf, _ = tiny_pair("llama")
    got = suppression_matrix(HookedModel(hf), random_tokens(1, 40)[0], RANGES)
    j, k = np.indices(got.shape)
    assert np.all(np.isnan(got[k <= j]))  # k <= j: undefined
    assert np.all(np.isnan(got[1])) and np.all(np.isnan(got[:, 1]))  # the empty sentence
    assert np.all(np.isfinite(got[(k > j) & (j != 1) & (k != 1)]))


def test_head_subset_equals_renormalised_pattern_edit():
    """Suppressing in heads (1, 0) and (2, 3) equals zeroing those heads' weights on j's keys and
    renormalising each row, done by an independent model copy through pattern_fns (eager path)."""
    hf, _ = tiny_pair("llama")
    heads = [(1, 0), (2, 3)]
    tokens = random_tokens(1, 40)[0]
    got = suppression_matrix(HookedModel(hf), tokens, RANGES, heads=heads, batch_size=3, kl_reduction="raw")

    other = HookedModel(copy.deepcopy(hf))

    def logits(hidden):
        fns = []
        if hidden is not None:
            for L, h in heads:

                def edit(w, h=h):
                    w = w.clone()
                    w[:, h, :, hidden] = 0
                    return w / w.sum(-1, keepdim=True)

                other.attention_control(L).pattern_fns.append(edit)
                fns.append((L, edit))
        try:
            with torch.no_grad():
                return other(tokens[None])[0]
        finally:
            for L, fn in fns:
                other.attention_control(L).pattern_fns.remove(fn)

    want, scale = _reference(logits, RANGES, TEMPERATURE)
    _assert_kl_close(got, want, scale, hf.config.num_hidden_layers)
    everywhere = suppression_matrix(HookedModel(hf), tokens, RANGES, kl_reduction="raw")
    assert np.nanmean(got) < np.nanmean(everywhere)  # two heads matter less than all 12


def test_temperature_changes_the_effect_and_matches_reference():
    hf, ref = tiny_pair("llama")
    tokens = random_tokens(1, 40)[0]
    got = suppression_matrix(HookedModel(hf), tokens, RANGES, temperature=1.0, kl_reduction="raw")
    want, scale = _reference(_eager_masked_logits(ref, tokens), RANGES, 1.0)
    _assert_kl_close(got, want, scale, hf.config.num_hidden_layers)


def test_controls_are_reset_even_after_an_error(monkeypatch):
    hf, _ = tiny_pair("llama")
    model = HookedModel(hf)

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(hf.base_model, "forward", boom)
    with pytest.raises(RuntimeError):
        suppression_matrix(model, random_tokens(1, 40)[0], RANGES)
    assert all(model.attention_control(L).key_block is None for L in range(3))


# ---- bad input ----------------------------------------------------------------------------------------


def test_plain_module_is_refused():
    with pytest.raises(HookError, match="cannot be intercepted"):
        suppression_matrix(nn.Linear(2, 2), torch.zeros(5, dtype=torch.long), [(0, 2), (2, 4)])


def test_trace_longer_than_context_is_refused():
    hf, _ = tiny_pair("llama")
    with pytest.raises(TraceError, match="context of 128: pass max_tokens"):
        suppression_matrix(HookedModel(hf), torch.zeros(200, dtype=torch.long), [(0, 100), (100, 200)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=0.0), "temperature must be > 0"),
        (dict(heads=[(3, 0)]), r"head \(3, 0\) does not exist"),
        (dict(heads=[]), "heads is empty"),
        (dict(batch_size=0), "batch_size"),
        (dict(kl_reduction="mean"), "unknown kl_reduction 'mean'.*'paper'"),
        (dict(p_nucleus=0.0), "p_nucleus must be in"),
    ],
)
def test_bad_parameters(kwargs, match):
    hf, _ = tiny_pair("llama")
    with pytest.raises(ConfigError, match=match):  # option values: ConfigError, not TraceError
        suppression_matrix(HookedModel(hf), random_tokens(1, 40)[0], RANGES, **kwargs)
