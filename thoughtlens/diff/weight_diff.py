"""Weight differences per module: how much, and how low-rank, each parameter changed.

    rows = weight_diff(pair)           # one row per parameter tensor that exists in both models
    # {"name", "layer", "shape", "norm_diff", "norm_base", "relative", "effective_rank", "stable_rank"}

- norm_diff: ||W_ft - W_base||_F; relative: norm_diff / ||W_base||_F (0 for an untouched tensor).
- effective_rank (matrices only): exp of the entropy of the normalised singular values of the difference
  (Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality"): 1 for a rank-1 update,
  min(shape) for a flat spectrum. stable_rank: ||dW||_F^2 / ||dW||_2^2, a cruder, always-<=-rank count.
  Fine-tunes are often low-rank updates (LoRA's premise); the effective rank says how far from that this one is.
"""

from __future__ import annotations

import re

import torch

from thoughtlens.diff.pair import ModelPair
from thoughtlens.progress import OnProgress, Tracker

_LAYER = re.compile(r"\.(?:layers|h|layer)\.(\d+)\.")


def effective_rank(delta: torch.Tensor) -> float:
    """exp(H(p)) with p = sigma / sum(sigma) over the singular values of a [m, n] matrix (0.0 for zeros)."""
    s = torch.linalg.svdvals(delta.double())
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def stable_rank(delta: torch.Tensor) -> float:
    """||dW||_F^2 / ||dW||_2^2 (0.0 for zeros)."""
    s = torch.linalg.svdvals(delta.double())
    return float((s.pow(2).sum() / s[0].pow(2)).item()) if s.numel() and s[0] > 0 else 0.0


@torch.no_grad()
def weight_diff(pair: ModelPair, *, ranks: bool = True, on_progress: OnProgress | None = None) -> list[dict]:
    """One row per parameter present in both models with the same shape, in the base model's order.

    ranks=False skips the SVDs (the norms alone take milliseconds; the SVDs about a second per layer here).
    """
    base = dict(pair.base.named_weights())
    ft = dict(pair.finetuned.named_weights())
    names = [n for n in base if n in ft and base[n].shape == ft[n].shape]
    tracker = Tracker(on_progress, "weights", "weight differences", total=len(names))
    rows = []
    for name in names:
        wb, wf = base[name].detach().float(), ft[name].detach().float().to(base[name].device)
        delta = wf - wb
        norm_diff, norm_base = float(delta.norm()), float(wb.norm())
        m = _LAYER.search(name)
        row = {
            "name": name,
            "layer": int(m.group(1)) if m else None,
            "shape": list(wb.shape),
            "norm_diff": norm_diff,
            "norm_base": norm_base,
            "relative": norm_diff / norm_base if norm_base > 0 else 0.0,
            "effective_rank": None,
            "stable_rank": None,
        }
        if ranks and delta.ndim == 2:
            row["effective_rank"] = effective_rank(delta) if norm_diff > 0 else 0.0
            row["stable_rank"] = stable_rank(delta) if norm_diff > 0 else 0.0
        rows.append(row)
        tracker.advance(1)
    return rows


def per_layer(rows: list[dict]) -> dict[int, float]:
    """{layer: ||dW||_F over all of that layer's parameters / ||W_base||_F}: how much each layer moved."""
    num: dict[int, float] = {}
    den: dict[int, float] = {}
    for r in rows:
        if r["layer"] is None:
            continue
        num[r["layer"]] = num.get(r["layer"], 0.0) + r["norm_diff"] ** 2
        den[r["layer"]] = den.get(r["layer"], 0.0) + r["norm_base"] ** 2
    return {L: (num[L] ** 0.5) / (den[L] ** 0.5) if den[L] > 0 else 0.0 for L in sorted(num)}


@torch.no_grad()
def first_changed_layer(base, finetuned) -> int | None:
    """The lowest layer L whose output (blocks.L.hook_resid_post) can differ between two HookedModels: the
    first decoder layer with a changed weight, or 0 when the embeddings changed. None when the embeddings and
    every layer are identical (only the final norm or the unembedding changed, or nothing did). Activations
    at or below a layer before it are the same in both models, so they show no difference at all."""
    a = base.adapter

    def same(path: str) -> bool:
        if not base.has_submodule(path):
            return True
        pa = dict(base.submodule(path).named_parameters())
        pb = dict(finetuned.submodule(path).named_parameters())
        return pa.keys() == pb.keys() and all(
            pa[n].shape == pb[n].shape and torch.equal(pa[n].detach().cpu(), pb[n].detach().to(pa[n].dtype).cpu())
            for n in pa
        )

    if not all(same(path) for path in (a.embed, a.pos_embed) if path):
        return 0
    for L in range(base.cfg.n_layers):
        if not same(f"{a.layers}.{L}"):
            return L
    return None
