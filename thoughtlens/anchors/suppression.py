"""Attention suppression: how much does sentence k depend on *attending to* sentence j?

For each sentence j, hide j's key positions before the softmax (scores -> -inf) in every layer and
head, or in a chosen subset of (layer, head) pairs, and measure the effect on each later sentence k
as the mean over k's tokens of a per-token KL(base || suppressed) between next-token distributions
at `temperature` (Thought Anchors, Bogdan et al. 2025, section 5).

Per-token value (`kl_reduction`):
- "paper" (default): the paper's code (whitebox-analyses/attention_analysis/attn_supp_funcs.py:
  get_suppression_KL_matrix with calculate_kl_divergence_sparse; logits_funcs.py:compress_logits_top_p):
  each distribution is truncated to its own nucleus (top-p 0.9999 at `temperature`, at most 100 tokens,
  logits stored in float16), the two are compared on the union of both nuclei with -1e9 for a token
  outside a distribution's own nucleus, KL(P || Q) is clipped at 0, and the value averaged is
  log(KL + 1e-9). A base-nucleus token missing from the suppressed nucleus therefore dominates (their
  -1e9 logit makes it ~p * 1.7e9 nats before the log).
- "raw": the plain KL over the full vocabulary, averaged as is (the pre-1.0 thoughtlens reduction).

Off-by-one: the logits at position t predict token t + 1, so sentence k's tokens [a, b) are
predicted by the logits at positions [a - 1, b - 1). (The original code compared the logits at
[a, b), i.e. the predictions of the *next* tokens.)

Cost: positions before sentence j's first token cannot change, so one unsuppressed forward gives
the KV cache, and each suppressed run starts from j's first token on top of that cache. Several
sentences j run as one batch; the batch recomputes from the earliest j in it (later rows redo a
few unchanged positions, which is cheaper than running them one by one). Logits are computed only
at the positions a KL needs, a chunk at a time: a full [T, vocab] logit tensor of a 4k-token
trace would be ~800 MB.

Output: [S, S] float64, row = suppressed sentence j, column = affected sentence k. Defined only
for k > j; NaN elsewhere (k <= j cannot be affected causally, k = j is masked from itself) and in
the row / column of a sentence with zero tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import DynamicCache

from thoughtlens.anchors.sentence_attention import (ProgressFn, TokenRanges, _as_sequence, attention_controls,
                                                     check_context, check_token_ranges)
from thoughtlens.errors import ConfigError
from thoughtlens.model.interventions import block_keys

HeadSubset = Sequence[tuple[int, int]]  # (layer, head) pairs
KL_REDUCTIONS = ("paper", "raw")
PAPER_MAX_K = 100  # logits_funcs.py:analyze_text_get_p_logits(max_k=100)
PAPER_LOG_EPS = 1e-9  # attn_supp_funcs.py: np.log(KL_sparse + 1e-9)
PAPER_OUTSIDE_LOGIT = -1e9  # calculate_kl_divergence_sparse: min_logit_val


def suppression_matrix(
    model,
    tokens: torch.Tensor,
    ranges: TokenRanges,
    *,
    temperature: float = 0.6,
    heads: HeadSubset | None = None,
    batch_size: int = 4,
    chunk_positions: int = 128,
    on_progress: ProgressFn | None = None,
    kl_reduction: str = "paper",
    p_nucleus: float = 0.9999,
) -> np.ndarray:
    """Suppression effects [S, S] (see module docstring).

    model: a HookedModel. tokens: [T] or [1, T] ids, fed as-is. ranges: S sentence token ranges into tokens.
    temperature: softmax temperature of both next-token distributions (> 0; the paper uses 0.6).
    heads: (layer, head) pairs to suppress in; None = every head of every layer.
    batch_size: suppressed sentences per forward (memory: batch_size x the KV cache of the trace).
    chunk_positions: positions per logit/KL block (memory: batch_size x chunk x vocab floats).
    on_progress(n): called as n more sentences j are done (S in total).
    kl_reduction: "paper" (mean of log(KL + 1e-9) over nucleus-truncated distributions, the default) or
    "raw" (mean KL over the full vocabulary); p_nucleus: the nucleus of "paper" (their 0.9999).
    """
    if kl_reduction not in KL_REDUCTIONS:
        raise ConfigError(f"unknown kl_reduction {kl_reduction!r}; use 'paper' (mean log(KL + 1e-9) over "
                          "nucleus-truncated distributions, the default) or 'raw' (mean KL)")
    if not 0 < p_nucleus <= 1:
        raise ConfigError(f"p_nucleus must be in (0, 1], got {p_nucleus}: the paper uses 0.9999")
    attention_controls(model)  # fail before any work if the model cannot be intercepted
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}: pass e.g. --temperature 0.6 (the paper's)")
    if batch_size < 1 or chunk_positions < 1:
        raise ConfigError(f"batch_size and chunk_positions must be >= 1, got {batch_size} and {chunk_positions}: pass e.g. --batch-size 4")
    tokens = _as_sequence(tokens).to(model.device)
    ranges = check_token_ranges(ranges, tokens.shape[1])
    last = max(b for _, b in ranges)
    check_context(model, last)
    tokens = tokens[:, :last]  # later tokens (the answer) cannot affect any sentence
    _head_blocks(model.cfg, heads)  # a one-line error for a head that does not exist, before any work
    n = len(ranges)
    result = np.full((n, n), np.nan)
    # Rows worth computing: j has tokens and some later sentence has tokens to be affected.
    rows = [j for j, (a, b) in enumerate(ranges) if b > a and any(d > c for c, d in ranges[j + 1 :])]
    if on_progress is not None and n - len(rows):
        on_progress(n - len(rows))
    if not rows:
        return result

    with torch.no_grad():
        base = model.hf_model.base_model(input_ids=tokens, use_cache=True)
        hidden_base = base.last_hidden_state  # [1, T, d_model]
        reuse = not any(getattr(layer, "is_sliding", False) for layer in base.past_key_values.layers)
        kv = [(layer.keys, layer.values) for layer in base.past_key_values.layers] if reuse else None
        del base
        target = _sentence_of_token(ranges, last)
        for batch in (rows[i : i + batch_size] for i in range(0, len(rows), batch_size)):
            start = ranges[batch[0]][0] if reuse else 0
            hidden = _suppressed_hidden(model, tokens, kv, start, [ranges[j] for j in batch], heads)
            result[batch] = _kl_rows(model, hidden, hidden_base, start, batch, ranges, target, temperature,
                                     chunk_positions, kl_reduction, p_nucleus)
            if on_progress is not None:
                on_progress(len(batch))
    return result


def _head_blocks(cfg, heads: HeadSubset | None) -> dict[int, torch.Tensor | None]:
    """Per layer: None = suppress in all heads; a bool [heads] = suppress where True. Missing layer = untouched."""
    if heads is None:
        return {L: None for L in range(cfg.n_layers)}
    blocks: dict[int, torch.Tensor | None] = {}
    for L, h in heads:
        if not (0 <= L < cfg.n_layers and 0 <= h < cfg.n_heads):
            raise ConfigError(f"head ({L}, {h}) does not exist: layers are 0..{cfg.n_layers - 1}, heads 0..{cfg.n_heads - 1}")
        blocks.setdefault(L, torch.zeros(cfg.n_heads, dtype=torch.bool))[h] = True
    if not blocks:
        raise ConfigError("heads is empty: pass None to suppress in every head, or a list of (layer, head) pairs")
    return blocks


def _sentence_of_token(ranges: list[tuple[int, int]], n_tokens: int) -> np.ndarray:
    """[n_tokens] sentence index of each token, -1 outside every sentence."""
    out = np.full(n_tokens, -1, dtype=np.int64)
    for s, (a, b) in enumerate(ranges):
        out[a:b] = s
    return out


def _suppressed_hidden(model, tokens, kv, start: int, hidden_ranges: list[tuple[int, int]],
                       heads: HeadSubset | None) -> torch.Tensor:
    """Final hidden states [B, T - start, d_model] with row b's sentence `hidden_ranges[b]` hidden as a key."""
    n_rows, n_tokens = len(hidden_ranges), tokens.shape[1]
    hide = torch.zeros(n_rows, n_tokens, dtype=torch.bool, device=tokens.device)  # [B, k]
    for b, (lo, hi) in enumerate(hidden_ranges):
        hide[b, lo:hi] = True
    cache = None
    if kv is not None and start > 0:
        # expand, not repeat: DynamicLayer.update concatenates, so the shared prefix is copied only once per row there.
        cache = DynamicCache(ddp_cache_data=[(k[..., :start, :].expand(n_rows, -1, -1, -1),
                                              v[..., :start, :].expand(n_rows, -1, -1, -1)) for k, v in kv])
    with block_keys(model, hide, heads=heads):
        out = model.hf_model.base_model(input_ids=tokens[:, start:].expand(n_rows, -1), past_key_values=cache,
                                        use_cache=cache is not None)
    return out.last_hidden_state


def _logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Logits in fp32: [..., pos, d_model] -> [..., pos, vocab].

    The causal-LM head applied by hand (unembedding plus optional final soft-cap, as HF's own
    forward does) so that logits exist only for the positions of one chunk.
    """
    logits = model.hf_model.get_output_embeddings()(hidden).float()
    softcap = getattr(model.hf_model.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def _log_probs(model, hidden: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(logits / T) in fp32: [..., pos, d_model] -> [..., pos, vocab]."""
    return torch.log_softmax(_logits(model, hidden) / temperature, dim=-1)


def _nucleus(logits: torch.Tensor, temperature: float, p: float, max_k: int) -> torch.Tensor:
    """[..., vocab] bool: the top-p nucleus of softmax(logits / T), at most max_k tokens, at least one
    (logits_funcs.py:compress_logits_top_p: k = min(searchsorted(cumsum, p) + 1, max_k))."""
    k_max = min(max_k, logits.shape[-1])
    top_p, top_i = torch.softmax(logits / temperature, dim=-1).topk(k_max, dim=-1)
    k = ((top_p.cumsum(-1) < p).sum(-1) + 1).clamp(1, k_max)  # [...]
    keep = torch.arange(k_max, device=logits.device) < k[..., None]
    return torch.zeros_like(logits, dtype=torch.bool).scatter(-1, top_i, keep)


def paper_log_kl(base_logits: torch.Tensor, supp_logits: torch.Tensor, temperature: float = 0.6,
                 p_nucleus: float = 0.9999, max_k: int = PAPER_MAX_K) -> torch.Tensor:
    """log(KL(P || Q) + 1e-9) per position as the paper computes it (attn_supp_funcs.py:
    calculate_kl_divergence_sparse on compress_logits_top_p's float16 logits).

    base_logits: [..., vocab] (P), supp_logits: [..., vocab] (Q), broadcastable. Returns [...]."""
    base_keep = _nucleus(base_logits, temperature, p_nucleus, max_k)
    supp_keep = _nucleus(supp_logits, temperature, p_nucleus, max_k)
    union = base_keep | supp_keep
    gone = float("-inf")  # outside the union: not part of either sparse distribution
    b = torch.where(union, torch.where(base_keep, base_logits.half().float(), PAPER_OUTSIDE_LOGIT), gone)
    s = torch.where(union, torch.where(supp_keep, supp_logits.half().float(), PAPER_OUTSIDE_LOGIT), gone)
    log_p, log_q = torch.log_softmax(b / temperature, dim=-1), torch.log_softmax(s / temperature, dim=-1)
    p = log_p.exp()
    kl = torch.where(p == 0, 0.0, p * (log_p - log_q)).sum(-1).clamp_min(0.0)
    return torch.log(kl.double() + PAPER_LOG_EPS)


def _kl_rows(model, hidden, hidden_base, start, batch, ranges, target, temperature, chunk,
             kl_reduction: str = "paper", p_nucleus: float = 0.9999) -> np.ndarray:
    """Rows `batch` of the matrix: [B, S] mean per-token KL value (see kl_reduction) over each later
    sentence's tokens."""
    n = len(ranges)
    sums = np.zeros((len(batch), n))
    # Logits at p predict token p + 1: the first needed position predicts the first token after the earliest j.
    first = ranges[batch[0]][1] - 1
    for p0 in range(max(first, start), target.shape[0] - 1, chunk):
        p1 = min(p0 + chunk, target.shape[0] - 1)
        if kl_reduction == "paper":
            kl = paper_log_kl(_logits(model, hidden_base[:, p0:p1]), _logits(model, hidden[:, p0 - start : p1 - start]),
                              temperature, p_nucleus).cpu().numpy()  # [B, c]
        else:
            base_lp = _log_probs(model, hidden_base[:, p0:p1], temperature)  # [1, c, vocab]
            supp_lp = _log_probs(model, hidden[:, p0 - start : p1 - start], temperature)  # [B, c, vocab]
            kl = (base_lp.exp() * (base_lp - supp_lp)).sum(-1).cpu().numpy()  # [B, c]
        predicted = target[p0 + 1 : p1 + 1]  # [c] sentence of the token each position predicts
        for b, j in enumerate(batch):
            later = predicted > j
            np.add.at(sums[b], predicted[later], kl[b, later])
    out = np.full((len(batch), n), np.nan)
    sizes = np.array([hi - lo for lo, hi in ranges], dtype=float)
    for b, j in enumerate(batch):
        k = np.arange(j + 1, n)
        k = k[sizes[k] > 0]
        out[b, k] = sums[b, k] / sizes[k]
    return out
