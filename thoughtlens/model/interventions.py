"""Interventions: public, composable context managers that change (or watch) what a HookedModel computes.

    with add_direction(model, "blocks.12.hook_resid_post", v, scale=4.0):
        text = model.generate(prompt, max_new_tokens=40)          # steered generation
    with project_out(model, "resid_pre", refusal_dir), block_keys(model, ranges=[(5, 9)]):
        logits = model(tokens)                                    # two interventions at once

| function            | what it does                                                     | where it acts              |
|---------------------|------------------------------------------------------------------|----------------------------|
| `add_direction`     | activation += scale * vector (steering, ActAdd)                  | any hook with a `pos` axis |
| `project_out`       | activation -= its component along directions (ablation)          | any hook with a `pos` axis |
| `splice`            | activation = module(activation) (e.g. an SAE's reconstruction)   | any hook                   |
| `stop_gradient`     | same value, no gradient flows back through it (detach)           | any hook                   |
| `block_keys`        | hide key positions before the softmax (attention suppression)    | the attention function     |
| `edit_pattern`      | pattern = fn(pattern), or read it (reweight keys, hook its grad) | the attention function     |
| `observe_attention` | call fn with each layer's query/key/mask (streamed reductions)   | the attention function     |

Every one is a plain module hook or an `AttentionControl` entry, so it acts on *every* forward of
the model while the block is open: `model(...)`, `run_with_cache`, `model.generate`, the HF sampler's
KV-cached decoding (`thoughtlens.sample.hf`), and the white-box analyses. They nest: entered
interventions stack, and two on the same hook point run in the order they were entered (outer first).
Leaving a block removes exactly what it added, also when the block raises.

Positions (`positions=`) are absolute token positions of the sequence (prompt included), so they keep
their meaning during KV-cached generation, where each forward sees only the new tokens: a forward
pre-hook on the decoder reads how many tokens are already cached. `slice(n, None)` means "from
position n on", e.g. every generated token of an n-token prompt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from thoughtlens.errors import HookError
from thoughtlens.model.adapters import get_module
from thoughtlens.model.attention import AttentionCall, AttentionControl, clear_mask_memo
from thoughtlens.model.hook_points import HookPoint

Positions = int | Sequence[int] | slice | None
KeyRanges = Sequence[tuple[int, int]]
HeadSpec = Sequence[int] | Sequence[tuple[int, int]] | None

__all__ = [
    "add_direction",
    "project_out",
    "splice",
    "stop_gradient",
    "block_keys",
    "edit_pattern",
    "observe_attention",
    "attention_controls",
    "hook_width",
    "AttentionObservation",
]


# ---- checks shared by every intervention -------------------------------------------------------------


def attention_controls(model) -> list[AttentionControl]:
    """The per-layer AttentionControl objects of a HookedModel, or a one-line HookError.

    Attention interventions need thoughtlens' attention function in every layer; a plain nn.Module or
    an HF model that was not wrapped cannot be intercepted.
    """
    controls = getattr(model, "_controls", None)
    hf = getattr(model, "hf_model", None)
    if controls is None or hf is None or not hasattr(model, "adapter"):
        raise HookError(
            f"{type(model).__name__} cannot be intercepted (no attention controls): wrap it with "
            "thoughtlens.HookedModel(hf_model) or load it with thoughtlens.load(...)"
        )
    layers = get_module(hf, model.adapter.layers)
    for L, layer in enumerate(layers):
        if getattr(get_module(layer, model.adapter.attn), "_thoughtlens_ctl", None) is not controls[L]:
            raise HookError(
                f"layer {L}'s attention has no thoughtlens AttentionControl: rebuild the wrapper with "
                "thoughtlens.HookedModel(hf_model) instead of editing hf_model's attention modules"
            )
    return controls


def _require_hooked(model) -> None:
    if not (hasattr(model, "hooks") and hasattr(model, "hook_names") and hasattr(model, "cfg")):
        raise HookError(
            f"{type(model).__name__} has no hook points: load it with thoughtlens.load(...) or wrap it with "
            "thoughtlens.HookedModel(hf_model)"
        )


def hook_width(model, hook_name: str) -> int:
    """Size of the last axis of a hook point's activation (d_model, d_mlp, d_head or d_vocab).

    Raises HookError for an unknown name and for attention patterns (their last axis is the key position).
    """
    name = model._site(hook_name).name
    c = model.cfg
    if name.endswith("hook_pattern"):
        raise HookError(f"'{name}' is an attention pattern, not a vector space: use block_keys or a pattern hook")
    if name.endswith("hook_logits"):
        return c.d_vocab
    if name.endswith("mlp.hook_post"):
        return c.d_mlp
    if name.split(".")[-1] in ("hook_q", "hook_k", "hook_v", "hook_z"):
        return c.d_head
    return c.d_model


def _hook_names(model, hook_name: str) -> list[str]:
    """The full names a name / short name / glob selects (HookError with suggestions if none)."""
    _require_hooked(model)
    return model._select(hook_name)


def _vector(model, names: list[str], vector, what: str) -> torch.Tensor:
    """A direction as a float tensor whose last axis matches every selected hook's width."""
    v = torch.as_tensor(vector).detach()
    if not v.is_floating_point():
        v = v.float()
    widths = {hook_width(model, n) for n in names}
    if len(widths) != 1:
        raise HookError(
            f"'{names[0]}'...'{names[-1]}' have different widths {sorted(widths)}: select hooks of one kind"
        )
    width = widths.pop()
    if v.ndim == 0 or v.shape[-1] != width:
        raise HookError(
            f"{what} has shape {tuple(v.shape)} but '{names[0]}' has width {width}: pass a [{width}] vector "
            "(directions are computed at a hook of the same kind)"
        )
    if not torch.isfinite(v).all():
        raise HookError(f"{what} contains NaN or inf: check how it was computed")
    return v


# ---- absolute positions during cached generation -------------------------------------------------------


@contextlib.contextmanager
def _position_tracker(model) -> Iterator[Callable[[int], int]]:
    """Yields `offset(n_new)`: the absolute position of the first token of the current forward.

    A forward pre-hook on the decoder (HF's base model, which every causal-LM forward, `generate`
    step and sampler step goes through) reads the cache length before the forward runs.
    """
    state = {"offset": 0}

    def pre(module, args, kwargs):
        # transformers >= 5.20 names the KV cache `cache`; older code and our callers may say `past_key_values`.
        past = kwargs.get("cache", kwargs.get("past_key_values"))
        cache_position = kwargs.get("cache_position")
        if past is not None and hasattr(past, "get_seq_length"):
            state["offset"] = int(past.get_seq_length())
        elif cache_position is not None:
            state["offset"] = int(cache_position.reshape(-1)[0])
        else:
            state["offset"] = 0

    handle = model.hf_model.base_model.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield lambda: state["offset"]
    finally:
        handle.remove()


def _check_positions(positions: Positions) -> Positions:
    if positions is None:
        return None
    if isinstance(positions, slice):
        if (
            (positions.start or 0) < 0
            or (positions.stop is not None and positions.stop < 0)
            or positions.step not in (None, 1)
        ):
            raise HookError(
                f"positions {positions} must be a slice of non-negative absolute positions with step 1, "
                "e.g. slice(n_prompt, None) for every generated token"
            )
        return positions
    if isinstance(positions, int):
        positions = [positions]
    positions = [int(p) for p in positions]
    if any(p < 0 for p in positions):
        raise HookError(
            f"positions {positions} must be non-negative absolute token positions: "
            "they keep their meaning while generate() adds tokens, so negative ones are ambiguous"
        )
    return positions


def _selector(positions: Positions, offset: Callable[[], int]) -> Callable[[int, torch.device], torch.Tensor | None]:
    """`select(n_pos, device)` -> bool [n_pos] of the current forward's positions to touch, or None for all."""
    if positions is None:
        return lambda n, device: None
    if isinstance(positions, slice):
        lo, hi = positions.start or 0, positions.stop

        def select(n, device):
            pos = torch.arange(offset(), offset() + n, device=device)
            keep = pos >= lo
            return keep if hi is None else keep & (pos < hi)

        return select
    wanted = torch.tensor(sorted(set(positions)), dtype=torch.long)

    def select(n, device):
        pos = torch.arange(offset(), offset() + n, device=device)
        return torch.isin(pos, wanted.to(device))

    return select


@contextlib.contextmanager
def _edit(
    model, names: list[str], positions: Positions, edit: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Replace the activation x [batch, pos, ...] of every selected hook by edit(x) at the chosen positions."""
    positions = _check_positions(positions)
    with contextlib.ExitStack() as stack:
        offset = stack.enter_context(_position_tracker(model)) if positions is not None else (lambda: 0)
        select = _selector(positions, offset)

        def hook(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
            keep = select(x.shape[1], x.device)
            if keep is None:
                return edit(x)
            if not keep.any():
                return x
            shape = (1, -1) + (1,) * (x.ndim - 2)
            return torch.where(keep.view(shape), edit(x), x)

        stack.enter_context(model.hooks([(n, hook) for n in names]))
        yield


# ---- residual-stream / activation edits ------------------------------------------------------------------


@contextlib.contextmanager
def add_direction(model, hook_name: str, vector, scale: float = 1.0, *, positions: Positions = None) -> Iterator[None]:
    """Add `scale * vector` to an activation while the block is open (activation addition / steering).

    hook_name: a hook point ("blocks.12.hook_resid_post"), a short name for every layer ("resid_post")
        or a glob; the vector is added at each match.
    vector: [width] where width is the hook's last axis (d_model for the residual stream), or
        [head, d_head] for per-head hooks. Added as given (not normalised), as Arditi et al.'s
        `get_activation_addition_input_pre_hook` does (refusal_direction, pipeline/utils/hook_utils.py).
    scale: multiplier; negative subtracts. positions: absolute token positions (None = all).
    """
    names = _hook_names(model, hook_name)
    v = _vector(model, names, vector, "vector")
    cast: dict[tuple, torch.Tensor] = {}

    def edit(x: torch.Tensor) -> torch.Tensor:
        key = (x.dtype, x.device)
        if key not in cast:
            cast[key] = (v.to(device=x.device, dtype=torch.float32) * float(scale)).to(x.dtype)
        return x + cast[key]

    with _edit(model, names, positions, edit):
        yield


def orthonormal(directions, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """directions [k, d] or [d] -> an orthonormal basis [k', d] of their span (QR in float64, returned as dtype)."""
    d = torch.as_tensor(directions).detach().double()
    d = d[None] if d.ndim == 1 else d
    if d.ndim != 2:
        raise HookError(f"directions must be [d] or [k, d], got shape {tuple(d.shape)}")
    q, r = torch.linalg.qr(d.T)  # q: [d, k]
    rank = (r.diagonal().abs() > 1e-10 * max(1.0, float(d.norm(dim=1).max()))).sum()
    if int(rank) == 0:
        raise HookError("the directions are all zero: nothing to project out (check how they were computed)")
    return q[:, : int(rank)].T.to(dtype)


@contextlib.contextmanager
def project_out(model, hook_name: str, directions, *, positions: Positions = None) -> Iterator[None]:
    """Remove an activation's component along `directions` while the block is open (directional ablation).

    x <- x - (x @ Q^T) Q, with Q an orthonormal basis of the directions' span, as Arditi et al.'s
    `get_direction_ablation_input_pre_hook` / `..._output_hook` do for one unit direction
    (refusal_direction, pipeline/utils/hook_utils.py). Computed in float32 (float64 for a float64 model, so
    that the projection is exact to that precision) and cast back.
    directions: [width] or [k, width]. hook_name / positions: as for `add_direction`.
    """
    names = _hook_names(model, hook_name)
    basis = orthonormal(_vector(model, names, directions, "directions"), torch.float64)  # [k, width]
    moved: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def edit(x: torch.Tensor) -> torch.Tensor:
        ct = torch.promote_types(x.dtype, torch.float32)
        q = moved.setdefault((x.device, ct), basis.to(x.device, ct))
        xf = x.to(ct)
        return (xf - (xf @ q.T) @ q).to(x.dtype)

    with _edit(model, names, positions, edit):
        yield


@contextlib.contextmanager
def splice(
    model, hook_name: str, module: nn.Module | Callable[[torch.Tensor], torch.Tensor], *, keep_error: bool = False
) -> Iterator[None]:
    """Replace an activation by `module(activation)` while the block is open (e.g. an SAE's reconstruction).

    The module sees the hook's own layout ([batch, pos, d_model] for the residual stream,
    [batch, pos, head, d_head] for hook_z) cast to its parameters' dtype, and must return the same
    shape. keep_error=True adds the reconstruction error back, detached: the forward value is the
    original activation (up to rounding) while gradients flow through the module, so attributions
    to its units (SAE features) are exact for the unchanged model (SAELens' `use_error_term`).
    """
    names = _hook_names(model, hook_name)
    param = next(iter(module.parameters()), None) if isinstance(module, nn.Module) else None

    def hook(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        inp = x if param is None else x.to(dtype=param.dtype, device=param.device)
        out = module(inp)
        if not isinstance(out, torch.Tensor):
            raise HookError(
                f"the spliced module returned {type(out).__name__} at '{hook.name}': "
                "return the reconstruction tensor (wrap the module to pick it out; for an SAE use "
                "thoughtlens.sae.splice_sae(model, sae))"
            )
        if out.shape != x.shape:
            raise HookError(
                f"the spliced module returned shape {tuple(out.shape)} at '{hook.name}' whose activation "
                f"has shape {tuple(x.shape)}: it must reconstruct the activation it reads"
            )
        if keep_error:
            out = out + (inp - out).detach()
        return out.to(x.dtype)

    with model.hooks([(n, hook) for n in names]):
        yield


@contextlib.contextmanager
def stop_gradient(model, hook_name: str) -> Iterator[None]:
    """Cut the autograd graph at an activation while the block is open: the forward value is unchanged, but no
    gradient flows back through it (activation -> activation.detach()).

    E.g. `stop_gradient(model, "blocks.*.attn.hook_k")` and `"blocks.*.attn.hook_v"`: a backward pass then reaches
    earlier positions only through the queries and residual stream of later ones, not through their keys
    and values (`anchors.attention.suppression_approx`'s direct gradients). hook_name: as for `add_direction`.
    """
    names = _hook_names(model, hook_name)

    def hook(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        return x.detach()

    with model.hooks([(n, hook) for n in names]):
        yield


# ---- attention ---------------------------------------------------------------------------------------------


def _layer_list(model, layers) -> list[int]:
    n = model.cfg.n_layers
    if layers is None:
        return list(range(n))
    layers = [layers] if isinstance(layers, int) else [int(L) for L in layers]
    bad = [L for L in layers if not 0 <= L < n]
    if bad:
        raise HookError(f"layers {bad} do not exist: {model.name} has layers 0..{n - 1}")
    if not layers:
        raise HookError("layers is empty: pass None for every layer, or a list of layer indices")
    return layers


def _head_masks(model, layers: list[int], heads: HeadSpec) -> dict[int, torch.Tensor | None]:
    """Per layer: None = every head; a bool [heads] = those heads. heads: [h, ...] or [(layer, head), ...]."""
    n_heads = model.cfg.n_heads
    if heads is None:
        return {L: None for L in layers}
    heads = list(heads)
    if not heads:
        raise HookError("heads is empty: pass None for every head, a list of head indices or of (layer, head) pairs")
    pairs = (
        [tuple(h) for h in heads] if isinstance(heads[0], (tuple, list)) else [(L, h) for L in layers for h in heads]
    )
    masks: dict[int, torch.Tensor | None] = {}
    for L, h in pairs:
        L, h = int(L), int(h)
        if not (0 <= L < model.cfg.n_layers and 0 <= h < n_heads):
            raise HookError(
                f"head ({L}, {h}) does not exist: layers are 0..{model.cfg.n_layers - 1}, heads 0..{n_heads - 1}"
            )
        masks.setdefault(L, torch.zeros(n_heads, dtype=torch.bool))[h] = True
    return masks


def key_mask(n_tokens: int, keys=None, ranges: KeyRanges | None = None) -> torch.Tensor:
    """bool [batch|1, n_tokens] of hidden keys from positions, (start, end) ranges or a bool tensor."""
    if (keys is None) == (ranges is None):
        raise HookError("pass exactly one of keys= (positions or a bool mask) and ranges= ([(start, end), ...])")
    if isinstance(keys, torch.Tensor) and keys.dtype == torch.bool:
        mask = keys[None] if keys.ndim == 1 else keys
        if mask.ndim != 2:
            raise HookError(f"a key mask must be bool [k] or [batch, k], got shape {tuple(keys.shape)}")
        return mask
    mask = torch.zeros(1, n_tokens, dtype=torch.bool)
    spans = [(int(p), int(p) + 1) for p in ([keys] if isinstance(keys, int) else keys)] if keys is not None else ranges
    for a, b in spans:
        a, b = int(a), int(b)
        if not 0 <= a <= b <= n_tokens:
            raise HookError(f"key range [{a}, {b}) is outside the {n_tokens} positions: use absolute token positions")
        mask[0, a:b] = True
    return mask


@contextlib.contextmanager
def block_keys(
    model,
    keys=None,
    *,
    ranges: KeyRanges | None = None,
    layers: int | Sequence[int] | None = None,
    heads: HeadSpec = None,
) -> Iterator[None]:
    """Hide key positions from every query while the block is open (attention suppression).

    Scores of the hidden keys are set to the dtype's minimum before the softmax, so the other keys'
    weights renormalise: Thought Anchors' suppression (Bogdan et al. 2025, section 5;
    whitebox-analyses/attention_analysis/attn_supp_funcs.py masks the same way).
    keys: positions [p, ...], or a bool mask [k] / [batch, k] (True = hidden; one row per batch row);
        ranges: [(start, end), ...] instead. Positions are absolute (the KV cache's keys included);
        keys beyond the mask (tokens generated later) stay visible.
    layers: which layers (None = all). heads: None = every head; [h, ...] = these heads in each chosen
        layer; [(layer, head), ...] = exactly these (then `layers` is ignored).
    """
    _require_hooked(model)
    controls = attention_controls(model)
    layer_list = _layer_list(model, layers)
    masks = _head_masks(model, layer_list, heads)
    width = (
        max([int(b) for _, b in ranges], default=0)
        if ranges is not None
        else (
            max([int(keys)] if isinstance(keys, int) else [int(p) + 1 for p in keys], default=0)
            if keys is not None and not isinstance(keys, torch.Tensor)
            else 0
        )
    )
    hide = key_mask(width, keys, ranges).to(model.device)[:, None, None, :]  # [batch|1, 1, 1, k]
    added: list[tuple[AttentionControl, torch.Tensor]] = []
    try:
        for L, head_mask in masks.items():
            block = hide if head_mask is None else hide & head_mask.to(hide.device)[None, :, None, None]
            controls[L].key_blocks.append(block)
            added.append((controls[L], block))
        yield
    finally:
        for ctl, block in added:
            # by identity: two equal masks from two nested blocks are different entries
            ctl.key_blocks[:] = [b for b in ctl.key_blocks if b is not block]
        clear_mask_memo()


PatternEdit = Callable[[torch.Tensor], "torch.Tensor | None"]


@contextlib.contextmanager
def edit_pattern(model, fn: PatternEdit, layers: int | Sequence[int] | None = None) -> Iterator[None]:
    """Call `fn(pattern)` in each chosen layer's attention while the block is open.

    pattern: the softmax weights [batch, head, q, k] as the model's own eager attention computes them (with any
    `block_keys` applied), in the model's dtype, part of the autograd graph when gradients are on. `fn` returns
    a tensor of the same shape to replace the pattern (the layer's output is then recomputed as pattern @ v),
    or None to leave the output as computed, e.g. after registering a gradient hook on the pattern. Layers
    with an edit pay for explicit attention weights. layers: which layers (None = all). Edits nest; they and
    `blocks.L.attn.hook_pattern` hooks run in the order they were attached.
    """
    _require_hooked(model)
    controls = attention_controls(model)

    def checked(pattern: torch.Tensor) -> torch.Tensor | None:
        new = fn(pattern)
        if new is not None and (not isinstance(new, torch.Tensor) or new.shape != pattern.shape):
            got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise HookError(
                f"edit_pattern's function returned {got} for a pattern of shape {tuple(pattern.shape)}: "
                "return a tensor of the same shape, or None to leave the pattern as it is"
            )
        return new

    added: list[AttentionControl] = []
    try:
        for L in _layer_list(model, layers):
            controls[L].pattern_fns.append(checked)
            added.append(controls[L])
        yield
    finally:
        for ctl in added:
            ctl.pattern_fns.remove(checked)


@dataclass
class AttentionObservation:
    """What `observe_attention` yields: the layers whose attention the observer has seen so far."""

    layers_seen: set[int] = field(default_factory=set)


@contextlib.contextmanager
def observe_attention(
    model, observer: Callable[[AttentionCall], None], layers: int | Sequence[int] | None = None
) -> Iterator[AttentionObservation]:
    """Call `observer(call)` in each chosen layer's attention while the block is open.

    `call` (an `AttentionCall`) holds that layer's query [batch, head, q, d_head] (after RoPE),
    key [batch, kv_head, k, d_head] (cache included), the additive mask (with any `block_keys`
    applied) and the scaling; `call.pattern_rows(rows)` gives softmax weights for a block of query
    rows, so a reduction can stream over rows without a [q, k] matrix of every head (this is how
    `anchors.attention.sentence_attention` builds sentence x sentence attention of a 4k-token trace).
    The forward itself is unchanged. Yields an `AttentionObservation` whose `layers_seen` tells
    whether every layer was actually intercepted.
    """
    _require_hooked(model)
    controls = attention_controls(model)
    seen = AttentionObservation()
    fns = []
    try:
        for L in _layer_list(model, layers):

            def fn(call: AttentionCall, L=L) -> None:
                seen.layers_seen.add(L)
                observer(call)

            controls[L].observers.append(fn)
            fns.append((controls[L], fn))
        yield seen
    finally:
        for ctl, fn in fns:
            ctl.observers.remove(fn)
        clear_mask_memo()
