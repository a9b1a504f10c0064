"""Approximate attention suppression: a first-order estimate of the [S, S] suppression matrix.

The exact matrix (anchors.suppression.suppression_matrix, the reference) runs one suppressed forward
per source sentence j. Here, in the style of attribution patching (Nanda 2023; Kramar et al. 2024,
AtP), every source sentence j gets an additive bias b_j on the attention logits of its keys, in every
layer and head (b_j = 0: the unchanged model; b_j -> -inf: j suppressed, as in the exact method; a
bias on the logits is a scale exp(b_j) on j's softmax weights, renormalised). One backward pass per
target sentence k gives d/db_j of k's score for every source j at once.

Method "grad_loglik" (the only one so far): the score of target k is the mean log-probability, at
`temperature`, of k's own tokens (the trace's tokens stand in for samples of the model), and
    approx[j, k] = | d mean_{t in k} log p_t(token_{t+1}) / d b_j |  at b = 0.
Why not the gradient of the per-sentence KL itself: KL(base || perturbed) is 0 with a zero gradient at
b = 0 (its minimum), so its first-order term carries no information; the log-likelihood's gradient is
the first-order change of the quantity whose distribution the KL compares. The estimate ranks effects
(row-wise top-1, correlation); its scale is not that of a KL.

Cost: S backward passes over the trace up to k's end (batched `batch_size` targets at a time), against
S suppressed forwards plus vocabulary-wide KLs for the exact matrix. Output layout as the exact one:
[S, S] float64, row = source j, column = target k, NaN for k <= j and for empty sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from thoughtlens.anchors.sentence_attention import (ProgressFn, TokenRanges, _as_sequence, attention_controls,
                                                     check_context, check_token_ranges)
from thoughtlens.errors import ConfigError

APPROX_METHODS = ("grad_loglik",)


def suppression_matrix_approx(
    model,
    tokens: torch.Tensor,
    ranges: TokenRanges,
    *,
    temperature: float = 0.6,
    method: str = "grad_loglik",
    batch_size: int = 4,
    on_progress: ProgressFn | None = None,
) -> np.ndarray:
    """First-order suppression effects [S, S] (module docstring). model: a HookedModel; tokens: [T] or
    [1, T]; ranges: S sentence token ranges; temperature > 0; batch_size: target sentences per backward."""
    if method not in APPROX_METHODS:
        raise ConfigError(f"unknown approximate suppression method {method!r}; use one of {', '.join(APPROX_METHODS)}")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}: pass e.g. 0.6 (the paper's)")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}: pass e.g. 4")
    controls = attention_controls(model)  # a one-line error if the model cannot be intercepted
    tokens = _as_sequence(tokens).to(model.device)
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

        for ctl in controls:
            ctl.pattern_fns.append(reweight)
        try:
            logits = model.hf_model(input_ids=tokens[:, :end].expand(len(batch), -1)).logits.float()  # [B, T, vocab]
        finally:
            for ctl in controls:
                ctl.pattern_fns.remove(reweight)
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
    return result


def agreement(approx: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """How well `approx` ranks the exact matrix: Pearson and Spearman over the defined cells, and the share
    of rows whose most affected later sentence (argmax) is the same."""
    from scipy.stats import pearsonr, spearmanr

    ok = np.isfinite(approx) & np.isfinite(exact)
    rows = [j for j in range(exact.shape[0]) if ok[j].sum() >= 2]
    top1 = [np.nanargmax(np.where(ok[j], approx[j], np.nan)) == np.nanargmax(np.where(ok[j], exact[j], np.nan))
            for j in rows]
    return {"pearson": float(pearsonr(approx[ok], exact[ok]).statistic),
            "spearman": float(spearmanr(approx[ok], exact[ok]).statistic),
            "top1": float(np.mean(top1)) if top1 else float("nan"), "n_cells": int(ok.sum()), "n_rows": len(rows)}


__all__: Sequence[str] = ["APPROX_METHODS", "suppression_matrix_approx", "agreement"]
