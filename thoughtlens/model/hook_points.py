"""Hook points: TransformerLens names mapped onto PyTorch hooks on Hugging Face's own modules.

| name                         | shape                         | where it is read                                  |
|------------------------------|-------------------------------|---------------------------------------------------|
| hook_embed                   | [batch, pos, d_model]         | token embedding output                            |
| hook_pos_embed               | [batch, pos, d_model]         | learned position embedding (GPT-2)                |
| blocks.L.hook_resid_pre      | [batch, pos, d_model]         | input of decoder layer L                          |
| blocks.L.ln1.hook_normalized | [batch, pos, d_model]         | output of the pre-attention norm                  |
| blocks.L.attn.hook_q         | [batch, pos, head, d_head]    | query projection output (before RoPE / q-k norms) |
| blocks.L.attn.hook_k         | [batch, pos, kv_head, d_head] | key projection output (before RoPE / q-k norms)   |
| blocks.L.attn.hook_v         | [batch, pos, kv_head, d_head] | value projection output                           |
| blocks.L.attn.hook_pattern   | [batch, head, q, k]           | softmax weights (attention function)              |
| blocks.L.attn.hook_z         | [batch, pos, head, d_head]    | input of the output projection                    |
| blocks.L.hook_attn_out       | [batch, pos, d_model]         | what attention adds to the residual               |
| blocks.L.hook_resid_mid      | [batch, pos, d_model]         | input of the pre-MLP norm (see below)             |
| blocks.L.ln2.hook_normalized | [batch, pos, d_model]         | output of the pre-MLP norm                        |
| blocks.L.mlp.hook_post       | [batch, pos, d_mlp]           | input of the MLP's down projection                |
| blocks.L.hook_mlp_out        | [batch, pos, d_model]         | what the MLP adds to the residual                 |
| blocks.L.hook_resid_post     | [batch, pos, d_model]         | output of decoder layer L                         |
| ln_final.hook_normalized     | [batch, pos, d_model]         | output of the final norm                          |
| hook_logits                  | [batch, pos, d_vocab]         | the model's final logits                          |

A hook is `fn(tensor, hook) -> tensor | None`; returning a tensor replaces the activation.
`hook_k` and `hook_v` have n_kv_heads heads (kv_head). Parallel-residual models have no `hook_resid_mid`.
Editing `hook_resid_mid` changes the MLP's input exactly and the residual stream by adding the
same difference to the MLP's output (exact up to float rounding), because HF keeps the residual
in a local variable that no module hook can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from thoughtlens.errors import HookError
from thoughtlens.model.adapters import Adapter, ModelShape, get_module, has_module


@dataclass(frozen=True)
class HookPoint:
    """Passed to every hook as its second argument: which activation this is.

    As in TransformerLens, `hook.name` is the full hook name and `hook.layer()` the block index, so
    TransformerLens hook functions run unchanged.
    """

    name: str
    layer_index: int | None = None  # None for hooks outside the blocks (hook_embed, hook_logits, ...)

    def layer(self) -> int:
        """The index of the block this hook point is in (TransformerLens' `HookPoint.layer()`)."""
        if self.layer_index is None:
            raise HookError(f"hook '{self.name}' is not inside a block: read hook.layer_index, which is None here")
        return self.layer_index


HookFn = Callable[[torch.Tensor, HookPoint], "torch.Tensor | None"]


@dataclass(frozen=True)
class Site:
    """Where a hook point is read and how its tensor is laid out.

    kind: "out" (a module's output), "in" (a module's first input), "pattern" (attention function),
    "resid_mid" (pre-MLP norm input, with the residual fix-up described above).
    heads: reshape the last dim into [head, d_head] with this many heads.
    qkv: for fused projections, which of q/k/v (0/1/2) this point is.
    """

    name: str
    module: nn.Module
    kind: str
    layer: int | None = None
    heads: int | None = None
    qkv: int | None = None


def build_sites(hf_model: nn.Module, adapter: Adapter, shape: ModelShape) -> dict[str, Site]:
    """Every hook point of this model, in forward order."""
    sites: dict[str, Site] = {}

    def add(name, module, kind, layer=None, **kw):
        sites[name] = Site(name, module, kind, layer, **kw)

    add("hook_embed", get_module(hf_model, adapter.embed), "out")
    if adapter.pos_embed:
        add("hook_pos_embed", get_module(hf_model, adapter.pos_embed), "out")
    for L, layer in enumerate(get_module(hf_model, adapter.layers)):
        p = f"blocks.{L}."
        add(p + "hook_resid_pre", layer, "in", L)
        add(p + "ln1.hook_normalized", get_module(layer, adapter.ln1), "out", L)
        if adapter.qkv_proj:
            fused = get_module(layer, adapter.qkv_proj)
            for i, x in enumerate("qkv"):
                add(p + f"attn.hook_{x}", fused, "out", L, qkv=i)
        else:
            add(p + "attn.hook_q", get_module(layer, adapter.q_proj), "out", L, heads=shape.n_heads)
            add(p + "attn.hook_k", get_module(layer, adapter.k_proj), "out", L, heads=shape.n_kv_heads)
            add(p + "attn.hook_v", get_module(layer, adapter.v_proj), "out", L, heads=shape.n_kv_heads)
        add(p + "attn.hook_pattern", get_module(layer, adapter.attn), "pattern", L)
        add(p + "attn.hook_z", get_module(layer, adapter.o_proj), "in", L, heads=shape.n_heads)
        add(p + "hook_attn_out", get_module(layer, adapter.attn_out), "out", L)
        if not adapter.parallel_residual:
            add(p + "hook_resid_mid", get_module(layer, adapter.ln2), "resid_mid", L)
        add(p + "ln2.hook_normalized", get_module(layer, adapter.ln2), "out", L)
        add(p + "mlp.hook_post", get_module(layer, adapter.mlp_down), "in", L)
        add(p + "hook_mlp_out", get_module(layer, adapter.mlp_out), "out", L)
        add(p + "hook_resid_post", layer, "out", L)
    if has_module(hf_model, adapter.final_norm):
        add("ln_final.hook_normalized", get_module(hf_model, adapter.final_norm), "out")
    add("hook_logits", hf_model, "logits")
    return sites


# ---- attaching one hook ----------------------------------------------------------------------------


def _checked(site: Site, old: torch.Tensor, new: Any) -> torch.Tensor | None:
    """Validate a hook's return value: None (read-only) or a tensor of the same shape."""
    if new is None:
        return None
    if not isinstance(new, torch.Tensor):
        raise HookError(f"hook on '{site.name}' returned {type(new).__name__}; return a tensor or None")
    if new.shape != old.shape:
        raise HookError(
            f"hook on '{site.name}' returned shape {tuple(new.shape)} but the activation has shape "
            f"{tuple(old.shape)}; return a tensor of the same shape"
        )
    return new.to(dtype=old.dtype, device=old.device)


def _call(site: Site, fn: HookFn, tensor: torch.Tensor) -> torch.Tensor | None:
    """Present `tensor` in the hook's layout, call fn, and return the replacement in HF's layout."""
    point = HookPoint(site.name, site.layer)
    if site.heads:
        view = tensor.unflatten(-1, (site.heads, -1))
        new = _checked(site, view, fn(view, point))
        return None if new is None else new.flatten(-2)
    return _checked(site, tensor, fn(tensor, point))


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, new):
    return (new, *output[1:]) if isinstance(output, tuple) else new


def attach(site: Site, fn: HookFn, shape: ModelShape, adapter: Adapter, layer_module: nn.Module | None) -> list:
    """Register the PyTorch hooks that run `fn` at `site`. Returns removable handles (or callables)."""
    if site.kind == "out":
        if site.qkv is not None:
            return [site.module.register_forward_hook(_fused_qkv_hook(site, fn, shape, adapter))]

        def out_hook(module, args, output):
            new = _call(site, fn, _first(output))
            return None if new is None else _replace_first(output, new)

        return [site.module.register_forward_hook(out_hook)]

    if site.kind == "in":

        def in_hook(module, args, kwargs):
            if args:
                new = _call(site, fn, args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            new = _call(site, fn, kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})

        return [site.module.register_forward_pre_hook(in_hook, with_kwargs=True)]

    if site.kind == "logits":

        def logits_hook(module, args, output):
            new = _call(site, fn, output.logits)
            if new is not None:
                output.logits = new

        return [site.module.register_forward_hook(logits_hook)]

    if site.kind == "resid_mid":
        return _resid_mid_hooks(site, fn, get_module(layer_module, adapter.mlp_out))

    if site.kind == "pattern":
        ctl = site.module._thoughtlens_ctl
        point = HookPoint(site.name, site.layer)

        def pattern_fn(pattern):
            return _checked(site, pattern, fn(pattern, point))

        ctl.pattern_fns.append(pattern_fn)
        return [_Remover(lambda: ctl.pattern_fns.remove(pattern_fn))]

    raise AssertionError(site.kind)


class _Remover:
    """A RemovableHandle look-alike for state that is not a PyTorch hook."""

    def __init__(self, undo: Callable[[], None]):
        self._undo = undo

    def remove(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None


def _fused_qkv_hook(site: Site, fn: HookFn, shape: ModelShape, adapter: Adapter):
    point = HookPoint(site.name, site.layer)

    def hook(module, args, output):
        parts = list(adapter.split_qkv(output, shape))
        new = _checked(site, parts[site.qkv], fn(parts[site.qkv], point))
        if new is None:
            return None
        parts[site.qkv] = new
        return adapter.join_qkv(*parts, shape)

    return hook


def _resid_mid_hooks(site: Site, fn: HookFn, mlp_out: nn.Module) -> list:
    """Read resid_mid at the pre-MLP norm's input; carry an edit into the residual via the MLP output."""
    delta: list[torch.Tensor | None] = [None]

    def pre(module, args, kwargs):
        delta[0] = None
        mid = args[0]
        new = _call(site, fn, mid)
        if new is None:
            return None
        delta[0] = new - mid
        return (new, *args[1:]), kwargs

    def post(module, args, output):
        if delta[0] is None:
            return None
        d, delta[0] = delta[0], None
        return _replace_first(output, _first(output) + d)

    return [site.module.register_forward_pre_hook(pre, with_kwargs=True), mlp_out.register_forward_hook(post)]
