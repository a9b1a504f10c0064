"""The paper reduction computed sparsely (issue 18, P5 exact): the base's nucleus found once and reused by every
batch, the suppressed nucleus by a top-(K + 1) of the logits where that settles it, the KL on the <= 2K union
entries. Checked against the dense formula re-derived here (their compress_logits_top_p +
calculate_kl_divergence_sparse, in float64) and, end to end with a vocabulary larger than the nucleus cap,
against naive full forwards."""

from __future__ import annotations

import copy
import math

import numerics
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from thoughtlens import HookedModel
from thoughtlens.anchors.attention.suppression import _nucleus_sparse, paper_log_kl, suppression_matrix

RANGES = [(3, 8), (8, 8), (9, 15), (15, 22), (24, 30), (30, 38)]  # sentence 1 has no tokens


def dense_nucleus(logits: torch.Tensor, temperature: float, p: float = 0.9999, max_k: int = 100) -> torch.Tensor:
    """compress_logits_top_p per row ([n, vocab] -> bool [n, vocab]): sort the softmax, keep
    min(searchsorted(cumsum, p) + 1, max_k) tokens."""
    out = torch.zeros_like(logits, dtype=torch.bool)
    for r, row in enumerate(logits):
        probs, order = torch.sort(torch.softmax(row / temperature, dim=-1), descending=True)
        k = max(1, min(torch.searchsorted(probs.cumsum(0), p, right=False).item() + 1, max_k))
        out[r, order[:k]] = True
    return out


def dense_kl(base: torch.Tensor, supp: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """calculate_kl_divergence_sparse, rows [n, vocab], in float64: -1e9 for a union token outside a
    distribution's own nucleus, float16-rounded logits, KL clipped at 0. Returns (KL [n], scale [n]): scale is
    what the rounding of the KL's terms is relative to, sum p (|log p| + |log q|) + |log Z_p| + |log Z_q|."""
    bk, sk = dense_nucleus(base, temperature), dense_nucleus(supp, temperature)
    union = bk | sk
    b = torch.where(union, torch.where(bk, base.half().double(), -1e9), float("-inf"))
    s = torch.where(union, torch.where(sk, supp.half().double(), -1e9), float("-inf"))
    log_p, log_q = torch.log_softmax(b / temperature, -1), torch.log_softmax(s / temperature, -1)
    p = log_p.exp()
    kl = torch.where(p == 0, 0.0, p * (log_p - log_q)).sum(-1).clamp_min(0.0)
    scale = torch.where(p == 0, 0.0, p * (log_p.abs() + log_q.abs())).sum(-1)
    scale = scale + torch.logsumexp(b / temperature, -1).abs() + torch.logsumexp(s / temperature, -1).abs()
    return kl, scale


def dense_log_kl(base: torch.Tensor, supp: torch.Tensor, temperature: float) -> torch.Tensor:
    """log(KL + 1e-9) of `dense_kl`, per row."""
    return torch.log(dense_kl(base, supp, temperature)[0] + 1e-9)


def log_kl_tol(base: torch.Tensor, supp: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per row, how far two float64 computations of log(KL + 1e-9) on the same float16 logits can differ: the
    KL's rounding relative to its scale, through the slope of the log (1 / (KL + 1e-9)), plus the log's own
    rounding; torch sums the <= 2K union terms in a cascade, ~log2(2K) roundings per term."""
    kl, scale = dense_kl(base, supp, temperature)
    size = scale / (kl + 1e-9) + torch.log(kl + 1e-9).abs()
    return numerics.tol(torch.float64, 1.0, depth=math.log2(2 * 100)) * size


def assert_log_kl_close(got: torch.Tensor, want: torch.Tensor, bound: torch.Tensor) -> None:
    diff = (got.double() - want.double()).abs().flatten()
    bound = bound.flatten()
    worst = int((diff / bound).argmax())
    assert (diff <= bound).all(), f"entry {worst}: |diff| {float(diff[worst]):.3g} > {float(bound[worst]):.3g}"


def _logit_rows(n: int = 60, vocab: int = 1000, seed: int = 0) -> torch.Tensor:
    """Flat rows (nucleus capped at 100: the top-(K + 1) route), peaked rows (small nucleus: the softmax
    route) and a row with a near-tie at rank 100 (distinct probabilities, but too close for the top-(K + 1)
    route to trust: it must take the softmax route)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.3, 12.0, n)[:, None]
    rows = torch.randn(n, vocab, generator=g) * scale
    rows[0] = torch.randn(vocab, generator=g) * 0.3
    order = rows[0].topk(101).indices
    rows[0, order[100]] = rows[0, order[99]] - 1e-5  # ranks 100 and 101 nearly tie
    return rows


@pytest.mark.parametrize("temperature", [0.6, 0.05, 2.0])
def test_sparse_nucleus_equals_their_compress(temperature):
    logits = _logit_rows()
    idx, keep, value = _nucleus_sparse(logits, temperature, 0.9999, 100)
    got = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, keep)
    want = dense_nucleus(logits, temperature)
    sizes = want.sum(-1)
    assert (sizes == 100).any() and (sizes < 100).any()  # both routes are exercised
    assert torch.equal(got, want)
    torch.testing.assert_close(value, logits.gather(-1, idx).half().float(), rtol=0, atol=0)


@pytest.mark.parametrize("temperature", [0.6, 0.05])
def test_sparse_paper_log_kl_equals_dense_formula(temperature):
    base = _logit_rows(seed=1)
    g = torch.Generator().manual_seed(2)
    # from nearly equal to unrelated: small and large KL, nuclei that share most / few tokens
    noise = torch.logspace(-3, 1, base.shape[0])[:, None] * torch.randn(base.shape, generator=g)
    supp = base + noise
    got = paper_log_kl(base, supp, temperature)
    want = dense_log_kl(base, supp, temperature)
    assert got.shape == want.shape
    assert_log_kl_close(got, want, log_kl_tol(base, supp, temperature))
    assert got.min() < -15 and got.max() > 5  # both ends of the range were covered
    # broadcast: one base row against several suppressed rows ([1, c, vocab] vs [B, c, vocab])
    got_b = paper_log_kl(base[None, :10], torch.stack([supp[:10], supp[10:20]]), temperature)
    want_b = torch.stack(
        [dense_log_kl(base[:10], supp[:10], temperature), dense_log_kl(base[:10], supp[10:20], temperature)]
    )
    bound_b = torch.stack(
        [log_kl_tol(base[:10], supp[:10], temperature), log_kl_tol(base[:10], supp[10:20], temperature)]
    )
    assert got_b.shape == want_b.shape
    assert_log_kl_close(got_b, want_b, bound_b)


def _wide_vocab_llama(vocab: int = 400):
    """A tiny random Llama with more tokens than the nucleus cap (100), so the top-(K + 1) route runs."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    hf = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    with torch.no_grad():
        for p in hf.parameters():
            if p.ndim >= 2:
                p.mul_(3.0)
    return hf.eval()


def test_base_nucleus_reused_across_batches_matches_naive_passes():
    """Batches of 2 rows starting at different positions, 4-position chunks: the base nucleus computed once
    must line up with each batch's positions. Reference: S + 1 full forwards, explicit mask, dense formula.

    In float64: the logits are rounded to float32 and then float16 on both sides, and cached and full forwards
    in float32 differ by ~1e-7, which moves some logit across a float16 rounding boundary (one float16 step
    changes a log KL by up to nats). In float64 they differ by ~1e-15, too little to move a float32 rounding,
    so both sides see the same float16 logits. The reference is a plain HF copy with SDPA attention (HF's
    eager attention takes its softmax in float32)."""
    hf = _wide_vocab_llama().double()
    ref = copy.deepcopy(hf)  # not wrapped: plain HF attention
    tokens = torch.randint(0, 400, (40,), generator=torch.Generator().manual_seed(3))
    temperature = 0.05  # this model's nuclei at 0.05: 10 to 100 tokens, so both routes run
    got = suppression_matrix(HookedModel(hf), tokens, RANGES, temperature=temperature, batch_size=2, chunk_positions=4)

    n, lowest = len(tokens), torch.finfo(torch.float64).min

    def logits(hidden):
        mask = torch.full((n, n), lowest, dtype=torch.float64).triu(1)
        if hidden is not None:
            mask[:, hidden] = lowest
        with torch.no_grad():
            return ref(tokens[None], attention_mask=mask[None, None]).logits[0].float()  # as the library rounds

    base = logits(None)
    sizes = dense_nucleus(base, temperature).sum(-1)
    assert (sizes == 100).any() and (sizes < 100).any()  # both nucleus routes run in the matrix
    want = np.full((len(RANGES), len(RANGES)), np.nan)
    bound = np.full((len(RANGES), len(RANGES)), np.nan)
    for j, (a, b) in enumerate(RANGES):
        if b == a:
            continue
        sup = logits(list(range(a, b)))
        log_kl, tol = dense_log_kl(base, sup, temperature).numpy(), log_kl_tol(base, sup, temperature).numpy()
        for k, (c, d) in enumerate(RANGES):
            if k > j and d > c:
                want[j, k] = log_kl[c - 1 : d - 1].mean()  # logits at t predict token t + 1
                bound[j, k] = tol[c - 1 : d - 1].mean()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    # the same float16 logits on both sides: what is left is float64 rounding of the KLs
    defined = ~np.isnan(want)
    assert np.all(np.abs(got - want)[defined] <= bound[defined]), np.nanmax(np.abs(got - want) / bound)
    # a nucleus taken from the wrong positions (e.g. each batch's offset) would be off by nats
    assert np.nanmax(np.abs(want)) > 1.0
