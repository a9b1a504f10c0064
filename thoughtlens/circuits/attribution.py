"""Attribution patching: AtP (Nanda 2022) and the AtP* fixes (Kramár, Lieberum, Shah & Nanda 2024).

AtP estimates the effect of patching node n (see `patching.py`) from one forward and one backward
pass of the target run: effect(n) ~ (a_source(n) - a_target(n)) . dM/da(n) at the target, summed
over the node's elements and over the prompts of the batch. It is exact when the metric is linear
in the node, and fails where the model is far from linear between the two runs.

AtP* adds two fixes:
  * QK fix (sites "q" and "k"): a query or key acts only through the attention softmax, which
    saturates. Instead of linearising the softmax, recompute the attention pattern exactly with the
    patched query (one row) or key (one column, every query row) and linearise only from the
    pattern onwards: effect ~ sum(dM/dA * (A_patched - A_target)). A node that patches a head's key at
    every position at once (site "k", per_position=False) recomputes the whole pattern with all keys
    patched: softmax effects of single keys do not add up.
  * GradDrop: a node's direct and indirect effects can cancel in the gradient. For each layer l,
    zero the gradient flowing back through layer l's writes to the residual stream (its attention
    and MLP outputs), take the AtP estimate, and average the magnitudes:
    c(n) = sum_l |AtP_l(n)| / (n_layers - 1). This is a magnitude (>= 0), not a signed effect;
    compare it with |activation patching|.

Output: the same long DataFrame as `activation_patching` (layer, [head], [pos], value), so the two
can be compared row by row.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from thoughtlens.circuits.patching import (
    Metric,
    check_pair,
    checked_metric,
    nodes,
    site_hook,
    to_frame,
)
from thoughtlens.errors import ThoughtlensError


class _GradGate(torch.autograd.Function):
    """Identity forward; backward passes the gradient unless its layer is the one being dropped."""

    @staticmethod
    def forward(ctx, x, layer: int, state: dict):
        ctx.layer, ctx.state = layer, state
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        if ctx.state.get("dropped") == ctx.layer:
            return torch.zeros_like(grad), None, None
        return grad, None, None


def _gate_hooks(model, state: dict) -> list:
    hooks = []
    for L in range(model.cfg.n_layers):
        for name in (f"blocks.{L}.hook_attn_out", f"blocks.{L}.hook_mlp_out"):
            hooks.append((name, lambda t, hook: _GradGate.apply(t, hook.layer(), state)))
    return hooks


def _grad_leaf_hook(t, hook):
    """Make the embeddings a leaf that requires grad, so every later activation is in the graph."""
    return t.detach().requires_grad_(True)


def _keep_hook(store: dict):
    def hook(t, point):
        out = t.clone()  # the clone is what flows on, so gradients w.r.t. it are the node's gradients
        store[point.name] = out
        return out

    return hook


def _attention_inputs(store: dict, layers: Sequence[int]):
    """Observers that keep each layer's post-RoPE query [b, h, q, d], key [b, kv, k, d], mask and scaling."""

    def observe(call):
        store[call.layer] = (
            call.query.detach().float(),
            call.key.detach().float(),
            call.mask.detach().float(),
            call.scaling,
        )

    return {L: observe for L in layers}


def attribution_patching(
    model,
    clean,
    corrupt,
    metric: Metric,
    *,
    site: str = "z",
    per_position: bool = True,
    direction: str = "denoise",
    method: str = "atp",
    layers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """AtP ("atp", signed) or AtP* ("atp*", magnitudes) estimates of `activation_patching`.

    Same arguments and output as `activation_patching`. method="atp*" applies GradDrop for every
    site and, for sites "q" and "k", the QK fix; it costs one extra backward pass per layer.
    """
    if direction not in ("denoise", "noise"):
        raise ThoughtlensError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    if method not in ("atp", "atp*"):
        raise ThoughtlensError(f"method must be 'atp' or 'atp*', got {method!r}")
    clean_t, corrupt_t = check_pair(model, clean, corrupt)
    patches = nodes(model, site, clean_t.shape[1], per_position=per_position, layers=layers)
    source, target = (clean_t, corrupt_t) if direction == "denoise" else (corrupt_t, clean_t)
    qk_fix = method == "atp*" and site in ("q", "k")
    used_layers = list(dict.fromkeys(p.layer for p in patches))  # in the order `nodes` lists them
    # Where gradients are taken: the node itself, or (QK fix) the attention pattern it feeds.
    names = [f"blocks.{L}.attn.hook_pattern" if qk_fix else site_hook(site, L) for L in used_layers]

    state: dict = {"dropped": None}

    def run(tokens, kept: dict, attn: dict) -> torch.Tensor:
        """One forward pass with gradients on, keeping the nodes (or patterns) and attention inputs.
        Source and target go through the same hooks, so both take the same kernels (a kept pattern forces
        the explicit softmax) and an unchanged activation is bit-identical in the two runs."""
        hooks = [("hook_embed", _grad_leaf_hook)] + [(n, _keep_hook(kept)) for n in names]
        if method == "atp*":
            hooks += _gate_hooks(model, state)
        with _observing(model, _attention_inputs(attn, used_layers) if qk_fix else {}), model.hooks(hooks):
            return model(tokens)

    src_attn, tgt_attn = {}, {}
    src_kept: dict[str, torch.Tensor] = {}
    kept: dict[str, torch.Tensor] = {}
    with torch.enable_grad():
        src_logits = run(source, src_kept, src_attn).detach()
        source_cache = {n: t.detach() for n, t in src_kept.items()}
        del src_kept
        logits = run(target, kept, tgt_attn)
        value = checked_metric(metric, logits)
        tensors = [kept[n] for n in names]
        if qk_fix:
            deltas = [_qk_pattern_delta(site, src_attn[L], tgt_attn[L], per_position) for L in used_layers]
        else:
            deltas = [source_cache[n].float() - kept[n].detach().float() for n in names]

        def node_values(grads: list[torch.Tensor]) -> torch.Tensor:
            """One estimate per patch, in `patches` order: [n_patches]."""
            parts = []
            for g, delta in zip(grads, deltas):
                if qk_fix:  # [b, head, pos] -> [b, pos, head]
                    est = _pattern_estimate(site, g, delta, model.cfg.n_kv_heads).transpose(1, 2)
                else:  # [b, pos, (head)]
                    est = (g.float() * delta).sum(-1)
                parts.append(_per_patch(est, per_position))
            return torch.cat(parts)

        if method == "atp":
            values = node_values(_grads(value, tensors, retain=False))
        else:
            values = _grad_drop(model, value, tensors, state, node_values)
    df = to_frame(patches, values.tolist())
    src_value, tgt_value = float(checked_metric(metric, src_logits)), float(value.detach())
    clean_value, corrupt_value = (src_value, tgt_value) if direction == "denoise" else (tgt_value, src_value)
    df.attrs.update(
        clean_metric=clean_value, corrupt_metric=corrupt_value, site=site, direction=direction, method=method
    )
    return df


def _per_patch(est: torch.Tensor, per_position: bool) -> torch.Tensor:
    """est [batch, pos, (head)] -> flat values in `nodes` order (head-major, then pos).

    Every prompt is patched at once, so the batch is summed; a node covering all positions sums them.
    """
    t = est.sum(0)  # [pos, (head)]
    if not per_position:
        t = t.sum(0, keepdim=True)
    return (t.T if t.ndim == 2 else t).flatten()  # [head, pos] -> flat


def _grads(value: torch.Tensor, tensors: list[torch.Tensor], retain: bool) -> list[torch.Tensor]:
    grads = torch.autograd.grad(value, tensors, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, tensors)]


def _grad_drop(model, value, tensors, state, node_values) -> torch.Tensor:
    """sum_l |node estimates with layer l's residual writes cut from the backward pass| / (n_layers - 1).

    The magnitude is taken per node (after summing over the batch), as the node is patched in
    every prompt at once.
    """
    n = model.cfg.n_layers
    total = 0.0
    try:
        for L in range(n):
            state["dropped"] = L
            total = total + node_values(_grads(value, tensors, retain=L < n - 1)).abs()
    finally:
        state["dropped"] = None
    return total / max(n - 1, 1)


# ---- the QK fix --------------------------------------------------------------------------------------


def _scores(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor, scaling: float) -> torch.Tensor:
    """Attention logits [b, h, q, k] in fp32 (GQA keys repeated), masked like the model's eager path."""
    n_rep = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(n_rep, dim=1)
    return query @ key.transpose(-1, -2) * scaling + mask


def _qk_pattern_delta(site: str, src, tgt, per_position: bool = True) -> dict[str, torch.Tensor]:
    """What the QK fix needs to know about one layer, everything else held at the target run.

    q: "delta" [b, h, q, k] = softmax of each row with that row's source query - target pattern.
       (Rows are independent, so patching every query at once is the sum of the rows: exact either way.)
    k, per position: "A" [b, h, q, k] (target pattern), "lse" [b, h, q] (its log-normaliser), "new"
       [b, h, q, k] (scores of every query against the *source* key at each position, mask included) and
       "same" [b, h, q, k] (where that score is unchanged, so the row is too).
    k, all positions at once: "delta_all" [b, h, q, k] = pattern with every key patched - target pattern.
    """
    (q_s, k_s, _, _), (q_t, k_t, mask, scaling) = src, tgt
    if q_s.shape != q_t.shape:
        raise ThoughtlensError("the QK fix needs source and target runs of equal shape")
    base = _scores(q_t, k_t, mask, scaling)  # [b, h, q, k]
    if site == "q":  # each query row is patched on its own, so all patched rows fit one matrix
        return {"delta": _scores(q_s, k_t, mask, scaling).softmax(-1) - base.softmax(-1)}
    if not per_position:
        return {"delta_all": _scores(q_t, k_s, mask, scaling).softmax(-1) - base.softmax(-1)}
    new = _scores(q_t, k_s, mask, scaling)
    return {"A": base.softmax(-1), "lse": base.logsumexp(-1), "new": new, "same": new == base}


def _pattern_estimate(site: str, grad_pattern: torch.Tensor, d: dict, n_kv: int) -> torch.Tensor:
    """sum(dM/dA * dA) per node: q -> [b, head, pos]; k -> [b, kv_head, pos] (query heads summed per group)."""
    g = grad_pattern.float()  # [b, h, q, k]
    if site == "q":
        return (g * d["delta"]).sum(-1)
    if "delta_all" in d:  # every key of the head patched together: [b, kv_head, 1] (one "position")
        est = (g * d["delta_all"]).sum((-1, -2))[..., None]  # [b, h, 1]
        return est.unflatten(1, (n_kv, -1)).sum(2)
    # Key p patched: in each query row only score p changes (s_p -> s'_p). The new row is
    # A'_j = A_j / D (j != p), A'_p = A_p e^(s'_p - s_p) / D with D = 1 - A_p + A_p e^(s'_p - s_p),
    # so sum_j g_j A'_j = (G - g_p A_p + g_p e^u) / D with G = sum_j g_j A_j and u = s'_p - lse.
    # This avoids one softmax per key position; in log space so a dominant new score cannot overflow.
    A, u = d["A"], d["new"] - d["lse"][..., None]  # u = log(A_p e^(s'_p - s_p)) for every (q, p)
    G = (g * A).sum(-1, keepdim=True)  # [b, h, q, 1]
    log_d = torch.logaddexp(torch.log1p(-A.clamp(max=1.0)), u)
    new_sum = (G - g * A) * torch.exp(-log_d) + g * torch.exp(u - log_d)
    new_sum = torch.where(d["same"], G, new_sum)  # an unchanged score leaves its row as it was: exactly 0
    est = (new_sum - G).sum(2)  # sum over query rows: [b, h, p]
    return est.unflatten(1, (n_kv, -1)).sum(2)  # query heads h share kv head h // n_rep


class _observing:
    """Attach attention observers {layer: fn} for a block; always removed."""

    def __init__(self, model, observers: dict):
        self.model, self.observers = model, observers

    def __enter__(self):
        for L, fn in self.observers.items():
            self.model.attention_control(L).observers.append(fn)
        return self

    def __exit__(self, *exc):
        for L, fn in self.observers.items():
            self.model.attention_control(L).observers.remove(fn)
        return False
