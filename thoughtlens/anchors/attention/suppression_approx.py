"""Approximate attention suppression: a first-order estimate of the [S, S] suppression matrix.

The exact matrix (anchors.attention.suppression.suppression_matrix, the reference) runs one suppressed forward
per source sentence j. Here, in the style of attribution patching (Nanda 2023; Kramar et al. 2024,
AtP), every source sentence j gets an additive bias b_j on the attention logits of its keys, in every
layer and head (b_j = 0: the unchanged model; b_j -> -inf: j suppressed, as in the exact method; a
bias on the logits is a scale exp(b_j) on j's softmax weights, renormalised). The gradients at b = 0
estimate the effect of each source on each target.

Methods:
- "direct_grad" (default): ONE forward and ONE backward pass for the whole matrix. The bias is made
  per query position, B[t, j] (every layer and head), and the keys and values are detached from the
  graph (`stop_gradient` at hook_k / hook_v), so position t's residual stream, and so its next-token
  log-probability l_t, depends on B[t, :] only: the backward of sum_t l_t gives every
  G[t, j] = d l_t / d B[t, j] at B = 0 at once. What this drops: the indirect path (suppressing j
  changes the residual stream of a sentence m between j and k, which k then reads through m's keys and
  values); what it keeps: every layer's direct reweighting of k's own attention and its effect on k's
  later layers. d/dB[t, j] at B = 0 of the renormalised pattern w' = w e^B / sum(w e^B) is
  w_{t,key} (1[key in j] - W_{t,j}) with W_{t,j} = sum_{key in j} w_{t,key}, so each layer adds
  sum_heads (sum_{key in j} w g - W_{t,j} sum_key w g), g = d loss / d w (a tensor hook, no [T, T]
  bias tensor in the graph). Any per-position scalar can stand in for l_t (one backward gives its gradient
  for every t at once); `proxy` picks it:
  * "token" (default with kl_reduction="raw"): l_t = log p(trace token t + 1); the per-token KL proxy is the
    second-order term of a unit bias change, KL_t ~ 0.5 G[t, j]^2 (one-sample Fisher, the trace's token
    standing in for a sample).
  * "nucleus_gap" (default with kl_reduction="paper"): l_t = gap_t, the log-probability gap between the last
    token of the base nucleus and the first token outside it (the paper reduction's nucleus: top-p 0.9999, at
    most 100 tokens), and the per-token value is 0.5 (G[t, j] / gap_t)^2, the bias change relative to the
    change that would move a token across the nucleus edge. Why: the paper reduction is dominated by such
    crossings (a base-nucleus token missing from the suppressed nucleus gets a -1e9 logit, ~p * 1.7e9 nats,
    see anchors.attention.suppression), so how close each position is to a crossing matters more than its plain KL.
    On the benchmark trace (1,024 tokens, 40 sentences) it lifts the top-1 agreement with the exact matrix
    from 34 % to 68 % of rows (docs/benchmarks.md).
  Either value is reduced as the exact matrix reduces its KLs: "paper" = mean over k's tokens of
  log(value + 1e-9), "raw" = mean of the value. The result ranks effects; its scale is that of a unit bias,
  not of a full suppression.
- "grad_loglik": the total effect (indirect paths included) of one bias b_j per source sentence on
  the mean log-probability of target k's own tokens, approx[j, k] = | d mean_{t in k} l_t / d b_j | at
  b = 0, one backward per target sentence (batched `batch_size` at a time): S backward passes, about
  the cost of the exact matrix, so no speed-up (docs/benchmarks.md).
Why not the gradient of the per-sentence KL itself: KL(base || perturbed) is 0 with a zero gradient at
b = 0 (its minimum), so its first-order term carries no information.

Cost: "direct_grad" one forward + one backward over the trace with explicit (eager) attention
patterns; the exact matrix: S suppressed forwards (from each j on) plus vocabulary-wide KLs. Output
layout as the exact one: [S, S] float64, row = source j, column = target k, NaN for k <= j and for empty sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from thoughtlens.anchors.attention.sentence_attention import (
    ProgressFn,
    TokenRanges,
    as_sequence,
    attention_controls,
    check_context,
    check_token_ranges,
)
from thoughtlens.anchors.attention.suppression import KL_REDUCTIONS, PAPER_LOG_EPS, PAPER_MAX_K
from thoughtlens.errors import ConfigError
from thoughtlens.model.interventions import edit_pattern, stop_gradient

APPROX_METHODS = ("direct_grad", "grad_loglik")
PROXIES = ("nucleus_gap", "token")


def suppression_matrix_approx(
    model,
    tokens: torch.Tensor,
    ranges: TokenRanges,
    *,
    temperature: float = 0.6,
    method: str = "direct_grad",
    batch_size: int = 4,
    on_progress: ProgressFn | None = None,
    kl_reduction: str = "paper",
    chunk_positions: int = 256,
    proxy: str | None = None,
    p_nucleus: float = 0.9999,
) -> np.ndarray:
    """First-order suppression effects [S, S] (module docstring). model: a HookedModel; tokens: [T] or
    [1, T]; ranges: S sentence token ranges; temperature > 0; batch_size: target sentences per backward
    ("grad_loglik" only); kl_reduction: "paper" or "raw", how "direct_grad" reduces its per-token KL proxy
    (as the exact matrix's option of that name); chunk_positions: positions per logit block ("direct_grad");
    on_progress(n): n more sentences done, S in total (as `suppression_matrix`).
    proxy ("direct_grad" only): the per-position scalar whose gradient is read, "nucleus_gap" (default with the
    paper reduction) or "token" (default with "raw"); module docstring. p_nucleus: the nucleus of "nucleus_gap"
    (the exact matrix's option of that name, the paper's 0.9999)."""
    if method not in APPROX_METHODS:
        raise ConfigError(f"unknown approximate suppression method {method!r}; use one of {', '.join(APPROX_METHODS)}")
    if kl_reduction not in KL_REDUCTIONS:
        raise ConfigError(
            f"unknown kl_reduction {kl_reduction!r}; use 'paper' (mean log(KL + 1e-9), the default) or 'raw'"
        )
    if chunk_positions < 1:
        raise ConfigError(f"chunk_positions must be >= 1, got {chunk_positions}: pass e.g. 256")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}: pass e.g. 0.6 (the paper's)")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}: pass e.g. 4")
    proxy = proxy or ("nucleus_gap" if kl_reduction == "paper" else "token")
    if proxy not in PROXIES:
        raise ConfigError(f"unknown proxy {proxy!r}; use one of {', '.join(PROXIES)}")
    if not 0 < p_nucleus <= 1:
        raise ConfigError(f"p_nucleus must be in (0, 1], got {p_nucleus}: the paper uses 0.9999")
    attention_controls(model)  # a one-line error if the model cannot be intercepted
    tokens = as_sequence(tokens).to(model.device)
    ranges = check_token_ranges(ranges, tokens.shape[1])
    n = len(ranges)
    result = np.full((n, n), np.nan)
    sources = [j for j, (a, b) in enumerate(ranges) if b > a]
    targets = [k for k, (c, d) in enumerate(ranges) if d > c and c >= 1 and any(j < k for j in sources)]
    if not targets:
        return result
    check_context(model, max(d for _, d in ranges))
    # key_sentence[p] = index (into `sources`) of the sentence holding key p, -1 elsewhere.
    key_sentence = torch.full((tokens.shape[1],), -1, dtype=torch.long, device=model.device)
    for s, j in enumerate(sources):
        a, b = ranges[j]
        key_sentence[a:b] = s
    if method == "direct_grad":
        return _direct_grad(
            model,
            tokens,
            ranges,
            sources,
            targets,
            key_sentence,
            temperature,
            kl_reduction,
            chunk_positions,
            result,
            on_progress,
            proxy,
            p_nucleus,
        )

    for start in range(0, len(targets), batch_size):
        batch = targets[start : start + batch_size]
        end = max(ranges[k][1] for k in batch)
        keys = key_sentence[:end]
        bias = torch.zeros(len(batch), len(sources), device=model.device, requires_grad=True)  # [B, S_src]
        # scale[b, key] = exp(bias[b, sentence(key)]) on sentence keys, 1 elsewhere: [B, 1, 1, k]
        scale = torch.where(keys >= 0, bias[:, keys.clamp_min(0)].exp(), torch.ones((), device=model.device))

        def reweight(weights: torch.Tensor, scale=scale) -> torch.Tensor:
            w = weights * scale[:, None, None, : weights.shape[-1]].to(weights.dtype)
            return w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)

        with edit_pattern(model, reweight):
            logits = model(tokens[:, :end].expand(len(batch), -1)).float()  # [B, T, vocab]
        logp = torch.log_softmax(logits / temperature, dim=-1)
        loss = logits.new_zeros(())
        for b, k in enumerate(batch):
            c, d = ranges[k]
            # logits at position t predict token t + 1: sentence k's tokens [c, d) come from positions [c - 1, d - 1)
            picked = logp[b, c - 1 : d - 1].gather(-1, tokens[0, c:d, None]).squeeze(-1)
            loss = loss + picked.mean()
        (grad,) = torch.autograd.grad(loss, bias)  # rows do not interact: grad[b] is d L_{k_b} / d bias
        grad = grad.abs().double().cpu().numpy()
        for b, k in enumerate(batch):
            for s, j in enumerate(sources):
                if j < k:
                    result[j, k] = grad[b, s]
        if on_progress is not None:
            on_progress(len(batch))
    if on_progress is not None and len(ranges) > len(targets):
        on_progress(len(ranges) - len(targets))  # S in total, as the exact matrix reports
    return result


def _check_separate_kv(model) -> None:
    """A one-line error unless every layer has its own k_proj and v_proj modules (not fused QKV)."""
    ad = model.adapter
    if (
        ad.k_proj is None
        or ad.v_proj is None
        or not all(
            model.has_submodule(ad.k_proj, layer=L) and model.has_submodule(ad.v_proj, layer=L)
            for L in range(model.cfg.n_layers)
        )
    ):
        raise ConfigError(
            f"method 'direct_grad' needs separate k_proj / v_proj modules, which {ad.name} does not "
            "have (fused QKV): pass method='grad_loglik'"
        )


def _nucleus_gap(logp: torch.Tensor, p: float, max_k: int = PAPER_MAX_K) -> torch.Tensor:
    """[rows] gap_t = log p(last token of the nucleus) - log p(first token outside it), differentiable in logp
    [rows, vocab]; the nucleus as the exact paper reduction cuts it (logits_funcs.py:compress_logits_top_p:
    k = min(searchsorted(cumsum, p) + 1, max_k); `anchors.attention.suppression._nucleus_sparse`), at most
    vocab - 1 tokens so that a first token outside exists."""
    top, idx = logp.detach().topk(min(max_k + 1, logp.shape[-1]), dim=-1)  # [rows, K + 1], sorted
    k = ((top.exp().cumsum(-1) < p).sum(-1) + 1).clamp(1, top.shape[-1] - 1)  # nucleus size [rows]
    rows = torch.arange(logp.shape[0], device=logp.device)
    return logp[rows, idx[rows, k - 1]] - logp[rows, idx[rows, k]]


def _direct_grad(
    model,
    tokens,
    ranges,
    sources,
    targets,
    key_sentence,
    temperature,
    kl_reduction,
    chunk,
    result,
    on_progress,
    proxy,
    p_nucleus,
) -> np.ndarray:
    """Method "direct_grad" (module docstring): one forward, one backward, G[t, s] for every query position t
    and source s, reduced per (source, target) cell into `result` ([S, S], filled in place and returned)."""
    end = max(ranges[k][1] for k in targets)
    n_src = len(sources)
    keys = key_sentence[:end]
    one_hot = torch.zeros(end, n_src, device=model.device)  # [key, source]: the sentence holding each key
    one_hot[keys >= 0, keys[keys >= 0]] = 1.0
    grad_ts = torch.zeros(end, n_src, device=model.device, dtype=torch.float64)  # G[t, s], summed over layers

    def record(weights: torch.Tensor) -> None:
        """Pattern fn: hooks the pattern [1, head, q, k]; its gradient g gives this layer's d l_t / d B[t, s].
        Returns None (pattern unchanged): the eager output is computed from this very tensor (no dropout in eval),
        so no copy of the [head, T, T] pattern and no second pattern @ v."""
        w = weights.detach()[0]  # [head, q, k]

        def on_grad(g: torch.Tensor) -> None:
            # sum_heads (sum_{key in j} w g - W_{t,j} sum_key w g) = sum_{key in j} [sum_heads w (g - c)] with
            # c[head, q] = sum_key w g: the heads are summed on the [q, k] grid first, so the per-sentence sums
            # are one [q, k] @ [k, S] product per layer instead of one per head (9x fewer flops on SmolLM2).
            wg = (w * g[0]).float()  # [head, q, k]
            per_key = (wg - w.float() * wg.sum(-1, keepdim=True)).sum(0)  # [q, k]
            q, k = per_key.shape
            grad_ts[end - q :] += (per_key @ one_hot[:k]).double()

        weights.register_hook(on_grad)

    _check_separate_kv(model)
    with (
        stop_gradient(model, "blocks.*.attn.hook_k"),
        stop_gradient(model, "blocks.*.attn.hook_v"),
        edit_pattern(model, record),
    ):
        embed = model.embed(tokens[:, :end]).detach().requires_grad_(True)
        hidden = model.run_body(embeds=embed).last_hidden_state  # [1, T, d_model]
        # l_t for every position t that predicts a token of a target sentence (k's tokens [c, d) from [c - 1, d - 1))
        positions = torch.cat([torch.arange(ranges[k][0] - 1, ranges[k][1] - 1) for k in targets]).to(model.device)
        loss = hidden.new_zeros(())
        gaps = []  # nucleus_gap: gap_t of every position, in `positions` order
        for p0 in range(0, positions.shape[0], chunk):
            pos = positions[p0 : p0 + chunk]
            logits = model.unembed(hidden[0, pos], dtype=torch.float32)
            logp = torch.log_softmax(logits / temperature, dim=-1)
            if proxy == "token":
                loss = loss + logp.gather(-1, tokens[0, pos + 1, None]).sum()
            else:
                gap = _nucleus_gap(logp, p_nucleus)
                gaps.append(gap.detach())
                loss = loss + gap.sum()
        torch.autograd.grad(loss, embed)  # fills grad_ts through the pattern hooks

    g = grad_ts.cpu().numpy()
    if proxy == "token":
        kl = 0.5 * g**2  # [T, S] per-token KL proxy of a unit bias change (module docstring)
    else:  # 0.5 (d gap_t / d B[t, j] / gap_t)^2: the bias change relative to what it takes to change the nucleus
        gap_t = np.ones(g.shape[0])
        gap_t[positions.cpu().numpy()] = torch.cat(gaps).double().cpu().numpy()
        kl = 0.5 * (g / np.maximum(gap_t, 1e-6)[:, None]) ** 2
    value = np.log(kl + PAPER_LOG_EPS) if kl_reduction == "paper" else kl
    for k in targets:
        c, d = ranges[k]
        cell = value[c - 1 : d - 1].mean(0)  # [S]
        for s, j in enumerate(sources):
            if j < k:
                result[j, k] = cell[s]
    if on_progress is not None:
        on_progress(len(ranges))  # S in total, as the exact matrix reports
    return result


def agreement(approx: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """How well `approx` ranks the exact matrix: Pearson and Spearman over the defined cells, and the share
    of rows whose most affected later sentence (argmax) is the same."""
    from scipy.stats import pearsonr, spearmanr

    ok = np.isfinite(approx) & np.isfinite(exact)
    rows = [j for j in range(exact.shape[0]) if ok[j].sum() >= 2]
    top1 = [
        np.nanargmax(np.where(ok[j], approx[j], np.nan)) == np.nanargmax(np.where(ok[j], exact[j], np.nan))
        for j in rows
    ]
    return {
        "pearson": float(pearsonr(approx[ok], exact[ok]).statistic),
        "spearman": float(spearmanr(approx[ok], exact[ok]).statistic),
        "top1": float(np.mean(top1)) if top1 else float("nan"),
        "n_cells": int(ok.sum()),
        "n_rows": len(rows),
    }


__all__: Sequence[str] = ["APPROX_METHODS", "suppression_matrix_approx", "agreement"]
