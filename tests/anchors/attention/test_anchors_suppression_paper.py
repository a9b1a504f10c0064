"""Attention suppression with the paper's per-token value (the default) vs a plain re-implementation of
their code: whitebox-analyses/attention_analysis/logits_funcs.py:compress_logits_top_p and
attn_supp_funcs.py:calculate_kl_divergence_sparse + np.log(KL + 1e-9), averaged over each sentence."""

from __future__ import annotations

import math

import numerics
import numpy as np
import pytest
import torch
from tiny_models import random_tokens, tiny_pair

from thoughtlens import HookedModel
from thoughtlens.anchors.attention.suppression import suppression_matrix

RANGES = [(3, 8), (8, 8), (9, 15), (15, 22), (24, 30), (30, 38)]


def compress(logits_row: np.ndarray, p: float = 0.9999, max_k: int = 100, temperature: float = 0.6):
    """compress_logits_top_p for one position: (indices, float16 logits) of the nucleus."""
    probs = torch.softmax(torch.from_numpy(logits_row) / temperature, dim=-1)
    sorted_probs, sorted_idx = torch.sort(probs, descending=True)
    cum = torch.cumsum(sorted_probs, dim=0)
    k = min(torch.searchsorted(cum, p, right=False).item() + 1, max_k)
    k = max(1, min(k, len(logits_row)))
    idx = sorted_idx[:k].numpy()
    return idx, logits_row[idx].astype(np.float16)


def kl_sparse(base, supp, temperature: float = 0.6) -> tuple[float, float]:
    """calculate_kl_divergence_sparse, condensed. Returns (KL, scale): scale is what the float32 rounding of the
    KL's terms is relative to, sum p (|log p| + |log q|) + |log Z_p| + |log Z_q|."""
    (bi, bl), (si, sl) = base, supp
    union = np.union1d(bi, si)
    pos = {x: n for n, x in enumerate(union)}
    b = np.full(len(union), -1e9, dtype=np.float32)
    s = np.full(len(union), -1e9, dtype=np.float32)
    for x, v in zip(bi, bl):
        b[pos[x]] = v
    for x, v in zip(si, sl):
        s[pos[x]] = v
    log_p = torch.log_softmax(torch.from_numpy(b) / temperature, dim=0)
    log_q = torch.log_softmax(torch.from_numpy(s) / temperature, dim=0)
    p = torch.exp(log_p)
    terms = torch.where(p == 0, torch.tensor(0.0), p * (log_p - log_q))
    size = torch.where(p == 0, torch.tensor(0.0), p * (log_p.abs() + log_q.abs())).sum().item()
    size += abs(torch.logsumexp(torch.from_numpy(b) / temperature, 0).item())
    size += abs(torch.logsumexp(torch.from_numpy(s) / temperature, 0).item())
    return max(0.0, torch.sum(terms).item()), size


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.6, 0.05])  # 0.05: small nuclei that differ (the -1e9 path)
def test_paper_reduction_equals_their_code(temperature):
    """In float64: both sides round the logits to float32 and then to float16 (as their code stores them). Cached
    and full forwards in float32 differ by ~1e-7, which moves some logit across a float16 rounding boundary (one
    float16 step changes a log KL by up to nats); in float64 they differ by ~1e-15, so both sides see the same
    float16 logits. The reference is a plain HF copy with SDPA attention (HF's eager attention takes its
    softmax in float32)."""
    hf, ref = (m.double() for m in tiny_pair("llama"))
    ref.set_attn_implementation("sdpa")
    tokens = random_tokens(1, 40)[0]
    got = suppression_matrix(HookedModel(hf), tokens, RANGES, batch_size=2, chunk_positions=4, temperature=temperature)
    n = len(tokens)
    lowest = torch.finfo(torch.float64).min

    def logits(hidden):  # full forward, the hidden keys masked out
        mask = torch.full((n, n), lowest, dtype=torch.float64).triu(1)
        if hidden is not None:
            mask[:, hidden] = lowest
        with torch.no_grad():
            return ref(tokens[None], attention_mask=mask[None, None]).logits[0].float().numpy()

    base = logits(None)
    want = np.full((len(RANGES), len(RANGES)), np.nan)
    bound = np.full((len(RANGES), len(RANGES)), np.nan)
    for j, (a, b) in enumerate(RANGES):
        if b == a:
            continue
        sup = logits(list(range(a, b)))
        kl, size = np.array(
            [
                kl_sparse(
                    compress(base[t], temperature=temperature), compress(sup[t], temperature=temperature), temperature
                )
                for t in range(n)
            ]
        ).T
        log_kl = np.log(kl + 1e-9)
        # their KL is in float32 (thoughtlens's in float64): its rounding relative to the KL's scale, through the
        # log's slope 1 / (KL + 1e-9), plus the log's own; torch sums the <= 2K terms in a cascade (~log2(2K) roundings)
        slack = numerics.tol(torch.float32, 1.0, depth=math.log2(2 * 100)) * (size / (kl + 1e-9) + np.abs(log_kl))
        for k, (c, d) in enumerate(RANGES):
            if k > j and d > c:
                want[j, k] = log_kl[c - 1 : d - 1].mean()  # thoughtlens's alignment: logits at t predict t + 1
                bound[j, k] = slack[c - 1 : d - 1].mean()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    defined = ~np.isnan(want)
    assert np.all(np.abs(got - want)[defined] <= bound[defined]), np.nanmax(np.abs(got - want) / bound)
    raw = suppression_matrix(HookedModel(hf), tokens, RANGES, kl_reduction="raw", temperature=temperature)
    assert not np.allclose(np.nan_to_num(raw), np.nan_to_num(got))  # the two reductions differ
