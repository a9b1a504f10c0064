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
trace would be ~800 MB. For "paper", the base's nucleus does not depend on j and is found once for
the whole trace; each suppressed nucleus is found from a top-(K + 1) of its logits wherever that
settles it (`_nucleus_sparse`), and the KL runs on the <= 2K union entries in float64 (`_sparse_log_kl`),
not over the vocabulary. The values equal the dense formula's up to float rounding: in float64 the
formula's own value; today's float32 dense version differed from it by up to ~1e-4 on near-zero KLs,
which log(KL + 1e-9) magnifies.

Output: [S, S] float64, row = suppressed sentence j, column = affected sentence k. Defined only
for k > j; NaN elsewhere (k <= j cannot be affected causally, k = j is masked from itself) and in
the row / column of a sentence with zero tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from transformers import DynamicCache

from thoughtlens.anchors.attention.sentence_attention import (
    ProgressFn,
    TokenRanges,
    as_sequence,
    attention_controls,
    check_context,
    check_token_ranges,
)
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
        raise ConfigError(
            f"unknown kl_reduction {kl_reduction!r}; use 'paper' (mean log(KL + 1e-9) over "
            "nucleus-truncated distributions, the default) or 'raw' (mean KL)"
        )
    if not 0 < p_nucleus <= 1:
        raise ConfigError(f"p_nucleus must be in (0, 1], got {p_nucleus}: the paper uses 0.9999")
    attention_controls(model)  # fail before any work if the model cannot be intercepted
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}: pass e.g. --temperature 0.6 (the paper's)")
    if batch_size < 1 or chunk_positions < 1:
        raise ConfigError(
            f"batch_size and chunk_positions must be >= 1, got {batch_size} and {chunk_positions}: "
            "pass e.g. --batch-size 4"
        )
    tokens = as_sequence(tokens).to(model.device)
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
        base = model.run_body(tokens, use_cache=True)
        hidden_base = base.last_hidden_state  # [1, T, d_model]
        reuse = not any(getattr(layer, "is_sliding", False) for layer in base.past_key_values.layers)
        kv = [(layer.keys, layer.values) for layer in base.past_key_values.layers] if reuse else None
        del base
        target = _sentence_of_token(ranges, last)
        # The base's nucleus is the same for every suppressed j: computed once, from the first position a KL needs.
        base_from = ranges[rows[0]][1] - 1
        base_nuclei = (
            _base_nuclei(model, hidden_base, base_from, last - 1, temperature, p_nucleus, chunk_positions)
            if kl_reduction == "paper"
            else None
        )
        for batch in (rows[i : i + batch_size] for i in range(0, len(rows), batch_size)):
            start = ranges[batch[0]][0] if reuse else 0
            hidden = _suppressed_hidden(model, tokens, kv, start, [ranges[j] for j in batch], heads)
            result[batch] = _kl_rows(
                model,
                hidden,
                hidden_base,
                start,
                batch,
                ranges,
                target,
                temperature,
                chunk_positions,
                kl_reduction,
                p_nucleus,
                base_nuclei,
                base_from,
            )
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
            raise ConfigError(
                f"head ({L}, {h}) does not exist: layers are 0..{cfg.n_layers - 1}, heads 0..{cfg.n_heads - 1}"
            )
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


def _suppressed_hidden(
    model, tokens, kv, start: int, hidden_ranges: list[tuple[int, int]], heads: HeadSubset | None
) -> torch.Tensor:
    """Final hidden states [B, T - start, d_model] with row b's sentence `hidden_ranges[b]` hidden as a key."""
    n_rows, n_tokens = len(hidden_ranges), tokens.shape[1]
    hide = torch.zeros(n_rows, n_tokens, dtype=torch.bool, device=tokens.device)  # [B, k]
    for b, (lo, hi) in enumerate(hidden_ranges):
        hide[b, lo:hi] = True
    cache = None
    if kv is not None and start > 0:
        # expand, not repeat: DynamicLayer.update concatenates, so the shared prefix is copied only once per row there.
        cache = DynamicCache(
            ddp_cache_data=[
                (k[..., :start, :].expand(n_rows, -1, -1, -1), v[..., :start, :].expand(n_rows, -1, -1, -1))
                for k, v in kv
            ]
        )
    with block_keys(model, hide, heads=heads):
        out = model.run_body(tokens[:, start:].expand(n_rows, -1), past_key_values=cache, use_cache=cache is not None)
    return out.last_hidden_state


def _logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """Logits in fp32: [..., pos, d_model] -> [..., pos, vocab].

    The causal-LM head applied to the given positions only (`model.unembed`: the unembedding plus any final
    soft-cap, computed in fp32), so that logits exist only for the positions of one chunk.
    """
    return model.unembed(hidden, dtype=torch.float32)


def _log_probs(model, hidden: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(logits / T) in fp32: [..., pos, d_model] -> [..., pos, vocab]."""
    return torch.log_softmax(_logits(model, hidden) / temperature, dim=-1)


def _nucleus_sparse(logits: torch.Tensor, temperature: float, p: float, max_k: int):
    """The top-p nucleus of softmax(logits / T), at most max_k tokens, at least one, in sparse form
    (logits_funcs.py:compress_logits_top_p: k = min(searchsorted(cumsum, p) + 1, max_k)).

    logits: [..., vocab]. Returns (idx [..., K] long, keep [..., K] bool, value [..., K] float32 = the logit
    rounded to float16 as the paper stores it), K = min(max_k, vocab); entry i is among the K most likely
    tokens and is in the nucleus iff keep.

    Most positions never need the full-vocab softmax: from the top K + 1 logits alone, the softmax's
    normaliser Z lies in [S_K, S_K + (vocab - K) * w_(K+1)] (S_K: the top K's weights; every other token weighs
    at most the (K + 1)-th's), which brackets each cumsum S_i / Z. Where both ends of the bracket give the
    same k (with a 1e-5 relative margin for float32 rounding of the softmax route) and the nucleus' last token
    is not in a near-tie with the next, k is settled: a flat distribution (k = K) or a peaked one (negligible
    tail). The other positions take the softmax route itself."""
    vocab = logits.shape[-1]
    k_max = min(max_k, vocab)
    flat = logits.reshape(-1, vocab)  # [n, vocab]
    top_l, idx = flat.topk(min(k_max + 1, vocab), dim=-1)  # [n, K (+ 1)], sorted
    scaled = (top_l.double() - top_l[:, :1].double()) / temperature  # log weights, the top token's = 0
    cum = scaled[:, :k_max].exp().cumsum(-1)  # [n, K]: S_1 .. S_K
    tail = (vocab - k_max) * scaled[:, k_max].exp() if k_max < vocab else torch.zeros_like(cum[:, 0])
    last = k_max - 1  # k = min(count(cumsum < p) + 1, K): counts beyond K - 1 do not matter
    surely = (cum / cum[:, -1:] * (1 + 1e-5) < p).sum(-1).clamp_max(last)  # cumsums below p for any Z
    maybe = (cum / (cum[:, -1:] + tail[:, None]) * (1 - 1e-5) < p).sum(-1).clamp_max(last)
    k = surely + 1  # [n]
    # no near-tie between the nucleus' last token and the next one (which one a sort keeps would be arbitrary)
    nxt = k.clamp_max(scaled.shape[1] - 1)
    apart = (scaled.gather(-1, (k - 1)[:, None]) - scaled.gather(-1, nxt[:, None]))[:, 0] > 1e-4
    apart |= nxt == k - 1  # the whole vocabulary is in the nucleus: nothing to tie with
    slow = (surely != maybe) | ~apart
    idx = idx[:, :k_max].contiguous()
    keep = torch.arange(k_max, device=flat.device) < k[:, None]
    if slow.any():
        rows = slow.nonzero()[:, 0]
        top_p, top_i = torch.softmax(flat[rows] / temperature, dim=-1).topk(k_max, dim=-1)
        k_slow = ((top_p.cumsum(-1) < p).sum(-1) + 1).clamp(1, k_max)  # [rows]
        idx[rows] = top_i
        keep[rows] = torch.arange(k_max, device=flat.device) < k_slow[:, None]
    value = flat.gather(-1, idx).half().float()
    shape = (*logits.shape[:-1], k_max)
    return idx.view(shape), keep.view(shape), value.view(shape)


def _nucleus(logits: torch.Tensor, temperature: float, p: float, max_k: int) -> torch.Tensor:
    """[..., vocab] bool: the nucleus of `_nucleus_sparse` as a dense mask."""
    idx, keep, _ = _nucleus_sparse(logits, temperature, p, max_k)
    return torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, keep)


@contextlib.contextmanager
def _one_thread():
    """Run small tensor ops (~10^5 elements) on one intra-op thread. Splitting them buys little, and on a
    busy machine each parallel op waits for a descheduled worker: measured 0.8 s -> 0.03 s for one chunk's
    sparse KL with 2 threads at load ~10."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _in_nucleus(idx: torch.Tensor, other_idx: torch.Tensor, other_keep: torch.Tensor) -> torch.Tensor:
    """[..., K] bool: idx[..., i] is one of the kept tokens of other_idx (all [..., K], same shape).
    By binary search in the sorted kept ids (a K x K comparison per position would cost 100x more)."""
    ids = torch.where(other_keep, other_idx, -1).sort(-1).values.contiguous()  # -1: never a token id
    at = torch.searchsorted(ids, idx.contiguous()).clamp_max(ids.shape[-1] - 1)
    return ids.gather(-1, at) == idx


def _sparse_log_kl(base: tuple, supp: tuple, supp_at_base: torch.Tensor, temperature: float) -> torch.Tensor:
    """log(KL(P || Q) + 1e-9) of the paper's sparse distributions, computed on the <= 2K union entries only.

    base, supp: `_nucleus_sparse` triples (idx, keep, value), [..., K] each, broadcastable (base is [1, c, K]
    and supp [B, c, K] in `_kl_rows`); supp_at_base: [..., K] the suppressed logits (float16-rounded) at the
    base's top-K tokens. Same values as `paper_log_kl` on the dense logits: P has the base nucleus' logits and
    -1e9 on supp-only tokens, Q the suppressed nucleus' logits and -1e9 on base-only tokens; the union is
    laid out as [base's K entries, supp's K entries not already among the base's], the rest -inf."""
    (b_idx, b_keep, b_val), (s_idx, s_keep, s_val) = base, supp
    shape = torch.broadcast_shapes(b_idx.shape, s_idx.shape)
    b_in_s = _in_nucleus(b_idx.expand(shape), s_idx.expand(shape), s_keep.expand(shape))  # base entry also in supp's
    s_only = s_keep & ~_in_nucleus(s_idx.expand(shape), b_idx.expand(shape), b_keep.expand(shape))
    gone = torch.tensor(float("-inf"), device=b_val.device)
    outside = torch.tensor(PAPER_OUTSIDE_LOGIT, device=b_val.device)
    b_half = torch.where(b_keep, b_val, gone)
    s_half = torch.where(b_keep, torch.where(b_in_s, supp_at_base, outside), gone)
    b = torch.cat([b_half.expand(shape), torch.where(s_only, outside, gone).expand(shape)], dim=-1)  # [..., 2K]
    s = torch.cat([s_half.expand(shape), torch.where(s_only, s_val, gone).expand(shape)], dim=-1)
    # float64 (cheap on 2K entries): the float16 logits are exact in it, so the value is the formula's own and
    # does not depend on the order of the sums; in float32, KL of two near-equal distributions is rounding
    # noise (~1e-7), which log(KL + 1e-9) magnifies to several nats.
    b, s = b.double(), s.double()
    log_p, log_q = torch.log_softmax(b / temperature, dim=-1), torch.log_softmax(s / temperature, dim=-1)
    p = log_p.exp()
    kl = torch.where(p == 0, 0.0, p * (log_p - log_q)).sum(-1).clamp_min(0.0)
    return torch.log(kl + PAPER_LOG_EPS)


def paper_log_kl(
    base_logits: torch.Tensor,
    supp_logits: torch.Tensor,
    temperature: float = 0.6,
    p_nucleus: float = 0.9999,
    max_k: int = PAPER_MAX_K,
) -> torch.Tensor:
    """log(KL(P || Q) + 1e-9) per position as the paper computes it (attn_supp_funcs.py:
    calculate_kl_divergence_sparse on compress_logits_top_p's float16 logits).

    base_logits: [..., vocab] (P), supp_logits: [..., vocab] (Q), broadcastable. Returns [...]."""
    base = _nucleus_sparse(base_logits, temperature, p_nucleus, max_k)
    supp = _nucleus_sparse(supp_logits, temperature, p_nucleus, max_k)
    shape = torch.broadcast_shapes(base_logits.shape, supp_logits.shape)
    supp_at_base = supp_logits.expand(shape).gather(-1, base[0].expand(*shape[:-1], base[0].shape[-1])).half().float()
    return _sparse_log_kl(base, supp, supp_at_base, temperature)


def _base_nuclei(model, hidden_base: torch.Tensor, p0: int, p1: int, temperature: float, p: float, chunk: int):
    """The base's nucleus at positions [p0, p1), once for the whole matrix (it does not depend on j):
    `_nucleus_sparse` triples [1, p1 - p0, K], computed a chunk of positions at a time."""
    parts = [
        _nucleus_sparse(_logits(model, hidden_base[:, q0 : min(q0 + chunk, p1)]), temperature, p, PAPER_MAX_K)
        for q0 in range(p0, p1, chunk)
    ]
    return tuple(torch.cat([part[i] for part in parts], dim=1) for i in range(3))


def _kl_rows(
    model,
    hidden,
    hidden_base,
    start,
    batch,
    ranges,
    target,
    temperature,
    chunk,
    kl_reduction: str = "paper",
    p_nucleus: float = 0.9999,
    base_nuclei=None,
    base_from: int = 0,
) -> np.ndarray:
    """Rows `batch` of the matrix: [B, S] mean per-token KL value (see kl_reduction) over each later
    sentence's tokens. base_nuclei ("paper"): `_base_nuclei` from position base_from on."""
    n = len(ranges)
    sums = np.zeros((len(batch), n))
    # Logits at p predict token p + 1: row b needs positions from the last token of its own sentence j on.
    need = np.array([ranges[j][1] - 1 for j in batch])
    for p0 in range(max(int(need.min()), start), target.shape[0] - 1, chunk):
        p1 = min(p0 + chunk, target.shape[0] - 1)
        live = np.flatnonzero(need < p1)  # rows with a needed position in the chunk (the later rows start later)
        h = hidden[live, p0 - start : p1 - start]  # [b, c, d_model]
        if kl_reduction == "paper":
            base = tuple(t[:, p0 - base_from : p1 - base_from] for t in base_nuclei)  # [1, c, K] each
            supp_logits = _logits(model, h)  # [b, c, vocab]
            supp = _nucleus_sparse(supp_logits, temperature, p_nucleus, PAPER_MAX_K)
            with _one_thread():
                supp_at_base = supp_logits.gather(-1, base[0].expand(len(live), -1, -1)).half().float()
                kl = _sparse_log_kl(base, supp, supp_at_base, temperature).cpu().numpy()  # [b, c]
        else:
            base_lp = _log_probs(model, hidden_base[:, p0:p1], temperature)  # [1, c, vocab]
            supp_lp = _log_probs(model, h, temperature)  # [b, c, vocab]
            kl = (base_lp.exp() * (base_lp - supp_lp)).sum(-1).cpu().numpy()  # [b, c]
        predicted = target[p0 + 1 : p1 + 1]  # [c] sentence of the token each position predicts
        for row, b in enumerate(live):
            later = predicted > batch[b]
            np.add.at(sums[b], predicted[later], kl[row, later])
    out = np.full((len(batch), n), np.nan)
    sizes = np.array([hi - lo for lo, hi in ranges], dtype=float)
    for b, j in enumerate(batch):
        k = np.arange(j + 1, n)
        k = k[sizes[k] > 0]
        out[b, k] = sums[b, k] / sizes[k]
    return out
