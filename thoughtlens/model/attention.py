"""The attention function thoughtlens registers with transformers' `AttentionInterface`.

Every wrapped model runs its attention through `thoughtlens_attention`. In a layer nobody is
looking at, it hands straight to HF's SDPA (or to the model's own eager function where SDPA
cannot serve, e.g. Gemma 2's logit soft-capping), so numerics and speed are Hugging Face's own.

A layer's `AttentionControl` (attached to its attention module by HookedModel) asks for more:
  * pattern_fns: functions that see, and may replace, the softmax pattern [batch, head, q, k].
    Only these layers pay for explicit softmax weights, computed by the model's own eager function.
  * key_blocks: bool masks [batch|1, head|1, 1, k] of keys to hide before the softmax (attention
    suppression); several (nested `block_keys`) are OR-ed. A mask shorter than the keys (generation
    has added tokens since) leaves the extra keys visible.
  * observers: functions called with (query, key, mask) before the output is computed, for streaming
    analyses that reduce the pattern chunk by chunk without materialising it (see `pattern_rows`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "thoughtlens"

PatternFn = Callable[[torch.Tensor], "torch.Tensor | None"]
Observer = Callable[["AttentionCall"], None]


@dataclass
class AttentionControl:
    """What one layer's attention should do besides computing its output."""

    layer: int
    eager_default: bool = False  # the family has no SDPA support in HF (e.g. Gemma 2): idle path is its eager
    pattern_fns: list[PatternFn] = field(default_factory=list)
    key_blocks: list[torch.Tensor] = field(default_factory=list)  # each bool [batch|1, head|1, 1, k]: True = hidden
    observers: list[Observer] = field(default_factory=list)

    @property
    def idle(self) -> bool:
        return not self.pattern_fns and not self.key_blocks and not self.observers

    @property
    def key_block(self) -> torch.Tensor | None:
        """All key blocks OR-ed into one bool mask (None when nothing is blocked); for reading only."""
        if not self.key_blocks:
            return None
        width = max(b.shape[-1] for b in self.key_blocks)
        return _or_blocks(self.key_blocks, width)

    @key_block.setter
    def key_block(self, block: torch.Tensor | None) -> None:
        """Old single-mask interface: replaces every block. Prefer `thoughtlens.model.interventions.block_keys`."""
        self.key_blocks = [] if block is None else [block]


def _or_blocks(blocks: list[torch.Tensor], k_len: int) -> torch.Tensor:
    """OR of bool masks [batch|1, head|1, 1, k_i], each cut or False-padded to k_len keys."""
    out = None
    for b in blocks:
        if b.shape[-1] >= k_len:
            b = b[..., :k_len]
        else:  # keys added since the mask was made (generation): visible
            b = torch.nn.functional.pad(b, (0, k_len - b.shape[-1]), value=False)
        out = b if out is None else out | b
    return out


@dataclass
class AttentionCall:
    """The inputs of one attention call, as an observer sees them.

    query: [batch, head, q, d_head] (after RoPE / norms); key: [batch, kv_head, k, d_head] (cache included);
    mask: additive float mask broadcastable to [batch, head, q, k] (0 = visible, finfo.min = hidden).
    """

    layer: int
    module: torch.nn.Module
    query: torch.Tensor
    key: torch.Tensor
    mask: torch.Tensor
    scaling: float
    softcap: float | None

    def pattern_rows(self, rows: slice) -> torch.Tensor:
        """Softmax weights for a block of query rows, in fp32: [batch, head, rows, k].

        Mirrors HF eager attention (scores * scaling, optional tanh soft-cap, additive mask, softmax),
        so that streaming reductions never need the full [q, k] matrix of every head at once.
        """
        n_rep = self.query.shape[1] // self.key.shape[1]
        key = repeat_kv(self.key, n_rep).float()
        q = self.query[:, :, rows].float()
        scores = torch.matmul(q, key.transpose(-1, -2)) * self.scaling
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        mask = self.mask
        if mask.shape[-2] != 1:
            mask = mask[..., rows, :]
        scores = scores + mask.float()
        return torch.softmax(scores, dim=-1)


def _model_eager(module: torch.nn.Module) -> Callable:
    """The model family's own eager attention (same numerics as `attn_implementation="eager"`)."""
    fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if fn is None:  # pragma: no cover - every AttentionInterface model ships one
        raise RuntimeError(f"{type(module).__name__} has no eager_attention_forward")
    return fn


def additive_mask(attention_mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Turn SDPA's mask (bool, float, or None = plain causal) into eager's additive float mask.

    Returns [batch|1, head|1, q, k] with 0 where visible and finfo(query.dtype).min where hidden.
    With a KV cache the q rows are the last q of the k positions, hence the offset.
    """
    # Both values as tensors of the query's dtype: a Python float64 min would overflow a float32 where().
    zero = torch.zeros((), dtype=query.dtype, device=query.device)
    min_value = torch.tensor(torch.finfo(query.dtype).min, dtype=query.dtype, device=query.device)
    q_len, k_len = query.shape[-2], key.shape[-2]
    if attention_mask is None:
        q_pos = torch.arange(k_len - q_len, k_len, device=query.device)[:, None]
        visible = q_pos >= torch.arange(k_len, device=query.device)[None, :]
        return torch.where(visible, zero, min_value)[None, None]
    if attention_mask.dtype == torch.bool:
        mask = torch.where(attention_mask.to(query.device), zero, min_value)
    else:
        mask = attention_mask.to(query.dtype)
    return mask[..., :k_len]


# One entry: (inputs it was built from, kept alive so their ids stay unique; the mask).
_MASK_MEMO: list = []


def _blocked_mask(
    attention_mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor, blocks: list[torch.Tensor]
) -> torch.Tensor:
    """`additive_mask` with the key blocks applied: [batch|1, 1|head, q, k].

    Built once per forward and reused by every layer that sees the same inputs: HF passes one mask object to
    all layers and `block_keys` one block object per layer set, so the ids match. Why: at 2,048 tokens x batch
    4 the float mask is 64 MB, and building it in each of 30 layers cost ~6 % of a suppressed forward
    (bench_suppression.py --breakdown). Blocks are never edited in place (block_keys makes new tensors)."""
    ids = (id(attention_mask), tuple(id(b) for b in blocks), query.shape[-2], key.shape[-2], query.dtype, query.device)
    if _MASK_MEMO and _MASK_MEMO[0][0] == ids:
        return _MASK_MEMO[0][2]
    mask = additive_mask(attention_mask, query, key)
    if blocks:
        block = _or_blocks(blocks, key.shape[-2]).to(query.device)
        mask = mask.masked_fill(block, torch.finfo(query.dtype).min)
    _MASK_MEMO[:] = [(ids, (attention_mask, list(blocks)), mask)]
    return mask


def clear_mask_memo() -> None:
    """Drop the memoised mask (called when a `block_keys` / observer block closes, to free its memory)."""
    _MASK_MEMO.clear()


def _default_attention(module, query, key, value, attention_mask, **kwargs):
    ctl = getattr(module, "_thoughtlens_ctl", None)
    # SDPA cannot soft-cap logits, and some families do not support it at all: use their own eager path.
    if kwargs.get("softcap") is not None or (ctl is not None and ctl.eager_default):
        return _model_eager(module)(module, query, key, value, additive_mask(attention_mask, query, key), **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def thoughtlens_attention(module, query, key, value, attention_mask, **kwargs):
    """query: [batch, head, q, d_head]; key, value: [batch, kv_head, k, d_head].

    Returns (output [batch, q, head, d_head], weights or None), like every HF attention function.
    """
    ctl: AttentionControl | None = getattr(module, "_thoughtlens_ctl", None)
    if ctl is None or ctl.idle:
        return _default_attention(module, query, key, value, attention_mask, **kwargs)

    if ctl.key_blocks or ctl.observers:
        attention_mask = _blocked_mask(attention_mask, query, key, ctl.key_blocks)
    if ctl.observers:
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        call = AttentionCall(ctl.layer, module, query, key, attention_mask, scaling, kwargs.get("softcap"))
        for observe in ctl.observers:
            observe(call)

    if not ctl.pattern_fns:
        return _default_attention(module, query, key, value, attention_mask, **kwargs)

    eager_mask = additive_mask(attention_mask, query, key)
    out, weights = _model_eager(module)(module, query, key, value, eager_mask, **kwargs)
    replaced = False
    for fn in ctl.pattern_fns:
        new = fn(weights)
        if new is not None:
            weights, replaced = new, True
    if replaced:  # recompute the output from the edited pattern: out = pattern @ v
        n_rep = query.shape[1] // value.shape[1]
        out = torch.matmul(weights.to(value.dtype), repeat_kv(value, n_rep)).transpose(1, 2).contiguous()
    return out, weights


def register() -> str:
    """Register the function (idempotent) and return its implementation name."""
    if ATTN_IMPLEMENTATION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTN_IMPLEMENTATION, thoughtlens_attention)
        # Masks in SDPA's format (bool, or None for plain causal), so the idle path is exactly HF's SDPA.
        AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
    return ATTN_IMPLEMENTATION
