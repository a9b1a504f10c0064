"""Attention suppression with the paper's per-token value (the default) vs a plain re-implementation of
their code: whitebox-analyses/attention_analysis/logits_funcs.py:compress_logits_top_p and
attn_supp_funcs.py:calculate_kl_divergence_sparse + np.log(KL + 1e-9), averaged over each sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thoughtlens import HookedModel
from thoughtlens.anchors.suppression import suppression_matrix

from tiny_models import random_tokens, tiny_pair

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


def kl_sparse(base, supp, temperature: float = 0.6) -> float:
    """calculate_kl_divergence_sparse, condensed."""
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
    return max(0.0, torch.sum(terms).item())


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.6, 0.05])  # 0.05: small nuclei that differ (the -1e9 path)
def test_paper_reduction_equals_their_code(temperature):
    hf, ref = tiny_pair("llama")
    tokens = random_tokens(1, 40)[0]
    got = suppression_matrix(HookedModel(hf), tokens, RANGES, batch_size=2, chunk_positions=4,
                             temperature=temperature)
    n = len(tokens)
    lowest = torch.finfo(torch.float32).min

    def logits(hidden):  # full eager forward, the hidden keys masked out
        mask = torch.full((n, n), lowest).triu(1)
        if hidden is not None:
            mask[:, hidden] = lowest
        with torch.no_grad():
            return ref(tokens[None], attention_mask=mask[None, None]).logits[0].float().numpy()

    base = logits(None)
    want = np.full((len(RANGES), len(RANGES)), np.nan)
    for j, (a, b) in enumerate(RANGES):
        if b == a:
            continue
        sup = logits(list(range(a, b)))
        log_kl = np.array([np.log(kl_sparse(compress(base[t], temperature=temperature),
                                            compress(sup[t], temperature=temperature), temperature) + 1e-9)
                           for t in range(n)])
        for k, (c, d) in enumerate(RANGES):
            if k > j and d > c:
                want[j, k] = log_kl[c - 1 : d - 1].mean()  # thoughtlens's alignment: logits at t predict t + 1
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3, equal_nan=True)
    raw = suppression_matrix(HookedModel(hf), tokens, RANGES, kl_reduction="raw", temperature=temperature)
    assert not np.allclose(np.nan_to_num(raw), np.nan_to_num(got))  # the two reductions differ
