"""SAE features on chains of thought: which latents fire on which sentences, which separate the
sentences that matter from the rest, where else a feature fires, and what it writes to the logits.

    feats = sentence_features(model, sae, trace)                   # [n_sentences, d_sae]
    separating_features(feats, importance, top=10)                 # high- vs low-importance sentences
    category_features(feats, categories, top=5)                    # one-vs-rest per sentence category
    top_activating_sentences(model, sae, traces, feature=123)      # where else it fires
    logit_effects(model, sae, feature=123)                         # tokens its decoder row promotes / suppresses

(`thoughtlens.sae.run_features` computes all of these for every trace of a stored run, for the report page.)

A sentence's activation of a latent is the max (default) or mean over the sentence's tokens of the
latent's activation, with the whole trace (prompt + completion) as context.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from thoughtlens.errors import SAEError
from thoughtlens.sae.activations import model_activations
from thoughtlens.sae.base import SAE
from thoughtlens.sae.splice import check_fits


def _trace_tokens(model, trace) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """tokens [1, pos] of the trace text (BOS first when the model uses one) and each sentence's token range."""
    tok = model.tokenizer
    # BOS (EOS when there is none) first, as in training windows (activations.token_windows).
    first = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids = [first, *tok(trace.text, add_special_tokens=False)["input_ids"]]
    offset = 1
    ranges = [(a + offset, b + offset) for a, b in trace.token_ranges(tok)]
    return torch.tensor([ids], dtype=torch.long, device=model.device), ranges


@torch.no_grad()
def token_features(model, sae: SAE, tokens: torch.Tensor) -> torch.Tensor:
    """latents: [pos, d_sae] of one sequence tokens [1, pos] (float32, on CPU)."""
    check_fits(model, sae)
    acts = model_activations(model, tokens, [sae.cfg.hook_name])[0]
    return sae.eval().encode(acts.to(sae.device)).float().cpu()


@torch.no_grad()
def sentence_features(model, sae: SAE, trace, *, pool: str = "max") -> torch.Tensor:
    """[n_sentences, d_sae]: each sentence's activation of every latent (max or mean over its tokens;
    zeros for a sentence that owns no token)."""
    if pool not in ("max", "mean"):
        raise SAEError(f"pool must be 'max' or 'mean', got {pool!r}")
    tokens, ranges = _trace_tokens(model, trace)
    latents = token_features(model, sae, tokens)
    out = torch.zeros(len(ranges), sae.cfg.d_sae)
    for i, (a, b) in enumerate(ranges):
        if b > a:
            out[i] = latents[a:b].amax(0) if pool == "max" else latents[a:b].mean(0)
    return out


def _effect_table(feats: torch.Tensor, mask: np.ndarray, top: int, label: str) -> pd.DataFrame:
    """Per latent: mean in / out of `mask`, Cohen's d (pooled SD) and AUROC; the `top` largest |d|."""
    X = feats.detach().float().cpu().numpy()
    a, b = X[mask], X[~mask]
    if len(a) < 2 or len(b) < 2:
        raise SAEError(f"'{label}' needs at least two sentences on each side, got {len(a)} and {len(b)}")
    ma, mb = a.mean(0), b.mean(0)
    va, vb = a.var(0, ddof=1), b.var(0, ddof=1)
    pooled = np.sqrt(((len(a) - 1) * va + (len(b) - 1) * vb) / (len(a) + len(b) - 2))
    d = np.where(pooled > 0, (ma - mb) / np.where(pooled > 0, pooled, 1), 0.0)
    # AUROC of the latent as a score for membership: P(a > b) + 0.5 P(a == b) (Mann-Whitney U / (n_a n_b)).
    ranks = pd.DataFrame(X).rank(axis=0).to_numpy()
    auroc = (ranks[mask].sum(0) - len(a) * (len(a) + 1) / 2) / (len(a) * len(b))
    order = np.argsort(-np.abs(d), kind="stable")[:top]
    return pd.DataFrame(
        {
            "group": label,
            "feature": order,
            "cohens_d": d[order],
            "auroc": auroc[order],
            "mean_in": ma[order],
            "mean_out": mb[order],
        }
    )


def separating_features(
    feats: torch.Tensor, importance: Sequence[float], *, threshold: float | None = None, top: int = 10
) -> pd.DataFrame:
    """Latents whose sentence activation best separates high- from low-importance sentences.

    feats: [n_sentences, d_sae] (from `sentence_features`); importance: one score per sentence (e.g. a
    Thought Anchors counterfactual importance). High = above `threshold` (default: the median).
    Returns the `top` latents by |Cohen's d|, with AUROC and both group means.
    """
    imp = np.asarray(importance, dtype=float)
    if len(imp) != len(feats):
        raise SAEError(f"{len(imp)} importance scores for {len(feats)} sentences: pass one score per sentence")
    keep = np.isfinite(imp)
    cut = float(np.median(imp[keep])) if threshold is None else threshold
    mask = imp[keep] > cut
    return _effect_table(feats[torch.as_tensor(keep)], mask, top, "high_importance")


def category_features(feats: torch.Tensor, categories: Sequence[str], *, top: int = 5) -> pd.DataFrame:
    """For each sentence category, the `top` latents separating its sentences from all others (one vs rest).
    Categories with fewer than two sentences on either side are skipped."""
    cats = np.asarray([str(c) for c in categories])
    if len(cats) != len(feats):
        raise SAEError(f"{len(cats)} categories for {len(feats)} sentences: pass one category per sentence")
    tables = []
    for cat in sorted(set(cats)):
        mask = cats == cat
        if mask.sum() >= 2 and (~mask).sum() >= 2:
            tables.append(_effect_table(feats, mask, top, cat))
    if not tables:
        raise SAEError("no category has two or more sentences on each side: pass more sentences")
    return pd.concat(tables, ignore_index=True)


@torch.no_grad()
def top_activating_sentences(
    model, sae: SAE, traces: Sequence, feature: int, *, n: int = 10, pool: str = "max"
) -> pd.DataFrame:
    """The `n` sentences across `traces` where latent `feature` is most active (trace, sentence, text, activation)."""
    if not 0 <= feature < sae.cfg.d_sae:
        raise SAEError(f"feature {feature} does not exist: this SAE has latents 0..{sae.cfg.d_sae - 1}")
    rows = []
    for t_i, trace in enumerate(traces):
        acts = sentence_features(model, sae, trace, pool=pool)[:, feature]
        for s in trace.sentences:
            rows.append({"trace": t_i, "sentence": s.index, "text": s.text, "activation": float(acts[s.index])})
    df = pd.DataFrame(rows, columns=["trace", "sentence", "text", "activation"])
    return df.sort_values("activation", ascending=False, kind="stable").head(n).reset_index(drop=True)


@torch.no_grad()
def logit_weights(model, sae: SAE, features: Sequence[int]) -> torch.Tensor:
    """[len(features), vocab]: each latent's decoder row read straight through the unembedding,
    W_dec[f] * final-norm scale @ W_U^T (the "logit weight" of Bricken et al. 2023; the final norm's
    per-channel scale is folded in, its normalisation is not). float32 on CPU."""
    for feature in features:
        if not 0 <= feature < sae.cfg.d_sae:
            raise SAEError(f"feature {feature} does not exist: this SAE has latents 0..{sae.cfg.d_sae - 1}")
    if sae.cfg.d_output != model.cfg.d_model:
        raise SAEError(
            f"logit effects need a decoder into the residual stream (width {model.cfg.d_model}), got {sae.cfg.d_output}"
        )
    directions = sae.W_dec[list(features)].detach().float().cpu()  # [n, d_model]
    norm = model.submodule(model.adapter.final_norm) if model.has_submodule(model.adapter.final_norm) else None
    w = getattr(norm, "weight", None)
    if w is not None:
        scale = w.detach().float().cpu()
        directions = directions * (1.0 + scale if type(norm).__name__.startswith("Gemma") else scale)
    W_U = model.W_U.detach().float().cpu()  # [d_model, vocab]
    return directions @ W_U


@torch.no_grad()
def logit_effects(model, sae: SAE, feature: int, *, k: int = 10) -> pd.DataFrame:
    """Tokens whose logits the latent's decoder row raises / lowers most when read straight through
    the unembedding (`logit_weights`)."""
    effects = logit_weights(model, sae, [feature])[0]
    top = effects.topk(k)
    bottom = (-effects).topk(k)
    decode = model.tokenizer.decode
    rows = [
        {"direction": "up", "token": decode([int(i)]), "token_id": int(i), "effect": float(v)}
        for v, i in zip(top.values, top.indices)
    ]
    rows += [
        {"direction": "down", "token": decode([int(i)]), "token_id": int(i), "effect": -float(v)}
        for v, i in zip(bottom.values, bottom.indices)
    ]
    return pd.DataFrame(rows)
