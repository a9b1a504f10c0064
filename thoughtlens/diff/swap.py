"""Activation swapping: run model A with some activations taken from model B, to find where a change lives.

    swap_logits(pair.base, pair.finetuned, tokens, ["blocks.12.hook_resid_post"])   # base, layer 12 from ft
    effects = swap_effect_per_layer(pair, texts)                                    # one row per layer

A swap replaces A's activation at a hook point with B's activation at the same hook point on the same tokens
(all positions). Swapping `blocks.L.hook_resid_post` hands B's whole residual stream after layer L to A's later
layers; swapping a module's output (`blocks.L.hook_mlp_out`, `blocks.L.hook_attn_out`) replaces only that
module's contribution. Swapping the last layer's residual makes A's output B's residual read through A's final
norm and unembedding, so it reproduces B's logits exactly when the two share that readout (the project's pairs
do: their fine-tunes freeze it).

The per-layer effect of swapping into the base model is the fraction of the fine-tune's effect it carries:
`1 - KL(ft || swapped) / KL(ft || base)` summed over tokens (1: the swap alone gives the fine-tuned
predictions; 0: no change). The same with A and B exchanged ("ablation" direction) tells what is *needed*.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from thoughtlens.diff.kl import kl_from_logits
from thoughtlens.diff.pair import ModelPair
from thoughtlens.errors import ConfigError
from thoughtlens.progress import OnProgress, Tracker


@torch.no_grad()
def swap_logits(model_a, model_b, tokens: torch.Tensor, hook_names: Sequence[str]) -> torch.Tensor:
    """logits [batch, pos, d_vocab] of model_a on tokens [batch, pos], with each hook in `hook_names` set to
    model_b's activation there (B's activations are recorded in one clean forward of B first)."""
    names = list(hook_names)
    for n in names:
        if "hook_pattern" in n or n.endswith("hook_logits"):
            raise ConfigError(f"'{n}' cannot be swapped: swap a residual stream or a module output")
    _, cache_b = model_b.run_with_cache(tokens.to(model_b.device), names_filter=names)
    names = list(cache_b.keys())  # resolved full names (short names and globs expand here)

    def replace(x: torch.Tensor, hook) -> torch.Tensor:
        y = cache_b[hook.name].to(x.device, x.dtype)
        if y.shape != x.shape:
            raise ConfigError(
                f"'{hook.name}' has shape {tuple(x.shape)} in A but {tuple(y.shape)} in B: "
                "swap between models of the same architecture and size"
            )
        return y

    return model_a.run_with_hooks(tokens.to(model_a.device), [(n, replace) for n in names])


@torch.no_grad()
def swap_effect_per_layer(
    pair: ModelPair,
    texts: Sequence[str],
    *,
    site: str = "hook_resid_post",
    max_len: int = 128,
    direction: str = "base<-finetuned",
    on_progress: OnProgress | None = None,
) -> list[dict]:
    """For each layer L: swap `blocks.L.<site>` and measure how much of the fine-tune's effect that carries.

    direction "base<-finetuned": run the base with B = fine-tuned's activation (is this layer *sufficient*?);
    "finetuned<-base": run the fine-tune with the base's (is it *necessary*?). Returns rows
    {"layer", "kl_swapped", "kl_total", "effect"} with KLs summed over all tokens of `texts`, measured from the
    target model (the one whose activation is swapped in) to the swapped run.
    """
    if direction not in ("base<-finetuned", "finetuned<-base"):
        raise ConfigError(f"unknown swap direction '{direction}': use 'base<-finetuned' or 'finetuned<-base'")
    a, b = (pair.base, pair.finetuned) if direction == "base<-finetuned" else (pair.finetuned, pair.base)
    token_rows = [pair.base.to_tokens(t)[0, :max_len][None] for t in texts]
    kl_total = 0.0
    logits_b = []
    for toks in token_rows:
        lb, la = b(toks), a(toks.to(a.device)).to(b.device)
        logits_b.append(lb)
        kl_total += float(kl_from_logits(lb, la).sum())
    tracker = Tracker(on_progress, "swap", f"swapping {site} layer by layer", total=pair.n_layers)
    rows = []
    for L in range(pair.n_layers):
        kl = 0.0
        for toks, lb in zip(token_rows, logits_b):
            swapped = swap_logits(a, b, toks, [f"blocks.{L}.{site}"]).to(lb.device)
            kl += float(kl_from_logits(lb, swapped).sum())
        rows.append(
            {"layer": L, "kl_swapped": kl, "kl_total": kl_total, "effect": 1.0 - kl / kl_total if kl_total > 0 else 0.0}
        )
        tracker.advance(1)
    return rows
