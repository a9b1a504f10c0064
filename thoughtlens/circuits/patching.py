"""Activation patching: copy one activation from a source run into a target run and measure a metric.

Denoising (default) runs the corrupt prompt and patches in the clean activation: how much of the
clean behaviour does this node restore? Noising runs the clean prompt with the corrupt activation:
how much does losing this node break it? Each node is patched for every prompt of the batch at
once, and the metric (a scalar over the whole batch) is read once per node.

Sites (`site=`): resid_pre, resid_mid, resid_post, attn_out, mlp_out ([batch, pos, d_model]),
and the per-head sites z, q, k, v ([batch, pos, head, d_head]; k and v have n_kv_heads heads).
`per_position=False` patches a node at every position at once.

Many patches share one forward pass: the target batch is repeated once per patch, and each patch
edits only its own copy ("batched over patches"). Every pass has one shape and one unpatched copy,
the baseline of its patches, and the source activations come from a run of that shape: rounding can
depend on the batch shape, and this way a patch that changes nothing reads exactly 0 in any dtype.
Results are long pandas DataFrames with columns layer, [head], [pos], value (the effect: patched
metric - unpatched target metric), ready for `df.pivot(index="layer", columns="pos", values="value")`;
`df.attrs` holds the clean and corrupt metric values for normalising.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from thoughtlens.errors import ThoughtlensError
from thoughtlens.model.cache import ActivationCache
from thoughtlens.progress import OnProgress, Tracker

Metric = Callable[[torch.Tensor], torch.Tensor]  # logits [batch, pos, d_vocab] -> scalar tensor

SITES = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "z": "attn.hook_z",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
}
HEAD_SITES = ("z", "q", "k", "v")


@dataclass(frozen=True)
class Patch:
    """One node: the activation at `hook_name`, restricted to `head` and `pos` (None = all)."""

    hook_name: str
    layer: int
    head: int | None = None
    pos: int | None = None

    def index(self) -> tuple:
        """Index into the activation [batch, pos, (head, d_head | d_model)]."""
        pos = slice(None) if self.pos is None else self.pos
        return (slice(None), pos) if self.head is None else (slice(None), pos, self.head)


# ---- metrics ---------------------------------------------------------------------------------------


def logit_diff_metric(correct, wrong, pos: int = -1) -> Metric:
    """Mean over the batch of logit[correct] - logit[wrong] at `pos`; ids: one int or one per prompt."""
    correct_t, wrong_t = torch.as_tensor(correct).reshape(-1), torch.as_tensor(wrong).reshape(-1)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, pos].float()
        rows = torch.arange(last.shape[0])
        c, w = correct_t.expand(last.shape[0]), wrong_t.expand(last.shape[0])
        return (last[rows, c] - last[rows, w]).mean()

    return metric


def prob_metric(correct, pos: int = -1) -> Metric:
    """Mean over the batch of p(correct) at `pos`."""
    correct_t = torch.as_tensor(correct).reshape(-1)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        probs = logits[:, pos].float().softmax(-1)
        return probs[torch.arange(probs.shape[0]), correct_t.expand(probs.shape[0])].mean()

    return metric


def kl_metric(reference_logits: torch.Tensor, pos: int = -1) -> Metric:
    """Mean over the batch of KL(reference || patched) at `pos` (reference_logits: [batch, pos, d_vocab])."""
    ref_logp = reference_logits[:, pos].float().log_softmax(-1)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        logp = logits[:, pos].float().log_softmax(-1)
        return (ref_logp.exp() * (ref_logp - logp)).sum(-1).mean()

    return metric


def checked_metric(metric: Metric, logits: torch.Tensor) -> torch.Tensor:
    """Call the metric and insist on one number."""
    value = metric(logits)
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value, dtype=torch.float32)
    if value.numel() != 1:
        raise ThoughtlensError(
            f"the metric returned shape {tuple(value.shape)}, not a scalar: reduce over the batch (e.g. .mean())"
        )
    return value.reshape(())


# ---- inputs ----------------------------------------------------------------------------------------


def check_pair(model, clean, corrupt) -> tuple[torch.Tensor, torch.Tensor]:
    """clean, corrupt -> tokens [batch, pos] each; they must have the same shape."""
    clean_t, corrupt_t = model.as_tokens(clean), model.as_tokens(corrupt)
    if clean_t.shape != corrupt_t.shape:
        raise ThoughtlensError(
            f"clean tokens have shape {tuple(clean_t.shape)} but corrupt have {tuple(corrupt_t.shape)}: patching "
            "aligns positions, so write corrupt prompts with the same token count (check model.to_str_tokens)"
        )
    return clean_t, corrupt_t


def site_hook(site: str, layer: int) -> str:
    if site not in SITES:
        raise ThoughtlensError(f"unknown site {site!r}: use one of {', '.join(SITES)}")
    return f"blocks.{layer}.{SITES[site]}"


def _layers(model, layers) -> list[int]:
    n = model.cfg.n_layers
    out = list(range(n)) if layers is None else list(layers)
    bad = [L for L in out if not 0 <= L < n]
    if bad:
        raise ThoughtlensError(f"layers {bad} are out of range: the model has layers 0..{n - 1}")
    return out


def n_heads_at(model, site: str) -> int:
    return model.cfg.n_kv_heads if site in ("k", "v") else model.cfg.n_heads


def nodes(model, site: str, n_pos: int, *, per_position: bool = True, layers=None) -> list[Patch]:
    """Every node of a sweep, in (layer, head, pos) order."""
    out = []
    for L in _layers(model, layers):
        name = site_hook(site, L)
        heads = range(n_heads_at(model, site)) if site in HEAD_SITES else [None]
        positions = range(n_pos) if per_position else [None]
        out += [Patch(name, L, h, p) for h in heads for p in positions]
    return out


def to_frame(patches: Sequence[Patch], values: Sequence[float]) -> pd.DataFrame:
    """Long DataFrame with columns layer, [head], [pos], value (head / pos only when patches have them)."""
    cols = {"layer": [p.layer for p in patches]}
    if patches and patches[0].head is not None:
        cols["head"] = [p.head for p in patches]
    if patches and patches[0].pos is not None:
        cols["pos"] = [p.pos for p in patches]
    cols["value"] = list(values)
    return pd.DataFrame(cols)


# ---- running patches -------------------------------------------------------------------------------


def run_with_patches(model, target: torch.Tensor, source_cache, patches: Sequence[Sequence[Patch]]) -> torch.Tensor:
    """Run `target` [batch, pos] once per group of patches, all groups in one forward pass.

    patches[g] is a list of nodes patched together in copy g of the batch; their values come from
    `source_cache` (an ActivationCache of the same prompts). Returns logits [groups, batch, pos, d_vocab].
    """
    n = target.shape[0]
    by_hook: dict[str, list[tuple[int, Patch]]] = {}
    for g, group in enumerate(patches):
        for p in group:
            by_hook.setdefault(p.hook_name, []).append((g, p))

    def make_hook(edits):
        def hook(act, point):
            act = act.clone()
            for g, p in edits:
                idx = p.index()
                src = source_cache[p.hook_name][idx]
                act[(slice(g * n, (g + 1) * n), *idx[1:])] = src
            return act

        return hook

    repeated = target.repeat(len(patches), 1)
    with torch.no_grad():
        logits = model.run_with_hooks(repeated, [(name, make_hook(e)) for name, e in by_hook.items()])
    return logits.unflatten(0, (len(patches), n))


def _cache_in_shape(model, tokens: torch.Tensor, names: Sequence[str], copies: int):
    """Run `tokens` [batch, pos] repeated `copies` times and keep the first copy's logits and activations
    at `names`: the activations of a run with the same batch shape as the patched runs."""
    n = tokens.shape[0]
    store: dict[str, torch.Tensor] = {}

    def keep(act, point):
        store[point.name] = act[:n].detach().clone()

    with torch.no_grad():
        logits = model.run_with_hooks(tokens.repeat(copies, 1), [(name, keep) for name in names])
    return logits[:n], ActivationCache(store)


def _auto_batch(n: int, n_pos: int, budget_tokens: int = 4096) -> int:
    """Patches per forward: enough copies to fill ~budget tokens (fast on CPU without swapping)."""
    return max(1, budget_tokens // (n * n_pos))


def activation_patching(
    model,
    clean,
    corrupt,
    metric: Metric,
    *,
    site: str = "resid_pre",
    per_position: bool = True,
    direction: str = "denoise",
    layers: Sequence[int] | None = None,
    batch_size: int | None = None,
    on_progress: OnProgress | None = None,
) -> pd.DataFrame:
    """Patch every node of `site` (each layer [x head] [x position]) and record the metric.

    clean, corrupt: tokens [batch, pos] (or strings) of equal shape. metric: logits -> scalar.
    direction: "denoise" (clean into corrupt run) or "noise" (corrupt into clean run).
    batch_size: patches per forward pass (default: ~4096 tokens per pass).
    on_progress: receives `ProgressEvent`s (thoughtlens.progress), one per batch of patches.
    Returns a DataFrame (layer, [head], [pos], value) with attrs clean_metric, corrupt_metric, site, direction.
    value is the patch's effect: metric(patched target run) - metric(target run), the quantity AtP
    estimates; add `df.attrs["corrupt_metric"]` (denoising) to get the patched metric itself.
    """
    if direction not in ("denoise", "noise"):
        raise ThoughtlensError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    clean_t, corrupt_t = check_pair(model, clean, corrupt)
    patches = nodes(model, site, clean_t.shape[1], per_position=per_position, layers=layers)
    source, target = (clean_t, corrupt_t) if direction == "denoise" else (corrupt_t, clean_t)
    names = sorted({p.hook_name for p in patches})
    k = min(batch_size or _auto_batch(*clean_t.shape), max(len(patches), 1))
    # Every forward pass has one shape, k + 1 copies of the batch: copy 0 is the unpatched target run
    # (the baseline of that pass) and a short last chunk is filled with unpatched copies. The source
    # activations come from a run of that same shape. Rounding depends on the batch shape (bf16, GPU
    # kernels), so this is what makes a patch that changes nothing read exactly 0 in any dtype.
    src_logits, source_cache = _cache_in_shape(model, source, names, k + 1)
    src_value = float(checked_metric(metric, src_logits))
    tgt_value: float | None = None
    values: list[float] = []
    bar = Tracker(on_progress, "patching", f"patching {len(patches)} {site} nodes", len(patches))
    for start in range(0, len(patches), k):
        chunk = patches[start : start + k]
        groups = [[]] + [[p] for p in chunk] + [[]] * (k - len(chunk))
        logits = run_with_patches(model, target, source_cache, groups)
        baseline = float(checked_metric(metric, logits[0]))
        tgt_value = baseline if tgt_value is None else tgt_value
        values += [float(checked_metric(metric, group)) - baseline for group in logits[1 : len(chunk) + 1]]
        bar.advance(len(chunk))
    if tgt_value is None:  # no nodes (an empty layer list): the target run alone
        with torch.no_grad():
            tgt_value = float(checked_metric(metric, model(target)))
    df = to_frame(patches, values)
    clean_value, corrupt_value = (src_value, tgt_value) if direction == "denoise" else (tgt_value, src_value)
    df.attrs.update(clean_metric=clean_value, corrupt_metric=corrupt_value, site=site, direction=direction)
    return df
