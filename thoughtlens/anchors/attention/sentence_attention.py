"""Sentence x sentence attention, streamed inside the attention function.

For every layer and head, `A[q, k]` is the mean of the token-level attention weights over the
block (query tokens of sentence q) x (key tokens of sentence k), as in Thought Anchors
(Bogdan et al. 2025). Tokens outside every sentence (prompt, `</think>`, the answer) are in no
block, so they are excluded - though they still take part in each row's softmax.

Memory. The forward pass itself stays HF's SDPA; an `AttentionControl` observer sees each layer's
query/key while that layer runs and reduces the softmax `chunk_rows` query rows at a time
(`AttentionCall.pattern_rows`) straight to sentence sums. At most one layer's
[heads, chunk_rows, T] block of weights exists at any moment; never a T x T matrix of all heads.

Token ranges: `[(tok_start, tok_end), ...]`, one per sentence, indices into the token ids given
(e.g. from `ReasoningTrace.token_ranges`, shifted by one when a BOS token is prepended). They must
be sorted and non-overlapping. A sentence with no tokens (tok_start == tok_end) gets NaN in its
row and column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from thoughtlens.errors import HookError, TraceError
from thoughtlens.model.attention import AttentionCall
from thoughtlens.model.interventions import attention_controls, observe_attention

TokenRanges = Sequence[tuple[int, int]]
ProgressFn = Callable[[int], None]  # called with the number of steps just completed


def check_token_ranges(ranges: TokenRanges, n_tokens: int) -> list[tuple[int, int]]:
    """Validate sentence token ranges against a sequence of `n_tokens` tokens; returns them as ints."""
    out, previous_end = [], 0
    for i, (a, b) in enumerate(ranges):
        a, b = int(a), int(b)
        if not 0 <= a <= b <= n_tokens:
            raise TraceError(
                f"sentence {i} has token range [{a}, {b}) outside the {n_tokens} tokens: "
                "compute ranges on the same token ids you pass (shift by 1 when a BOS token is prepended)"
            )
        if a < previous_end:
            raise TraceError(
                f"sentence {i} starts at token {a}, before the previous sentence ends ({previous_end}): "
                "ranges must be sorted and non-overlapping"
            )
        previous_end = max(previous_end, b)
        out.append((a, b))
    if not out:
        raise TraceError("the trace has no sentences: check that the completion has reasoning text")
    return out


def check_context(model, n_tokens: int) -> None:
    """A trace longer than the model's context gives meaningless attention: refuse it clearly."""
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 0)
    if n_ctx and n_tokens > n_ctx:
        raise TraceError(
            f"the trace has {n_tokens} tokens, more than {model.name}'s context of {n_ctx}: pass max_tokens={n_ctx} "
            "(or --max-tokens) to analyse its first sentences only, or use a longer-context model"
        )


def sentence_weights(ranges: TokenRanges, n_tokens: int) -> torch.Tensor:
    """weights: [n_tokens, S] with 1/len(sentence) where the token belongs to the sentence, else 0.

    `weights.T @ X` averages the rows of X over each sentence's tokens.
    """
    w = torch.zeros(n_tokens, len(ranges), dtype=torch.float32)
    for s, (a, b) in enumerate(ranges):
        if b > a:
            w[a:b, s] = 1.0 / (b - a)
    return w


def _chunks(start: int, end: int, size: int) -> list[tuple[int, int]]:
    return [(r, min(r + size, end)) for r in range(start, end, size)]


class _SentenceReducer:
    """Observer that adds each layer's sentence-block means into `self.sums[layer]`: [heads, S, S]."""

    def __init__(
        self, weights: torch.Tensor, n_heads: int, layers: Sequence[int], chunk_rows: int, on_layer: ProgressFn | None
    ):
        self.weights = weights  # [T, S]
        rows = weights.sum(dim=1).nonzero().flatten()
        self.row_start, self.row_end = int(rows.min()), int(rows.max()) + 1  # query rows inside some sentence
        self.chunk_rows = chunk_rows
        self.sums = {L: torch.zeros(n_heads, weights.shape[1], weights.shape[1]) for L in layers}
        self.seen: set[int] = set()
        self.on_layer = on_layer

    def __call__(self, call: AttentionCall) -> None:
        if call.query.shape[0] != 1:
            raise HookError(f"sentence attention expects one sequence, got a batch of {call.query.shape[0]}")
        offset = call.key.shape[-2] - call.query.shape[-2]  # query row r is token offset + r
        k_len = call.key.shape[-2]
        key_w = self.weights[:k_len].to(call.query.device)
        acc = torch.zeros_like(self.sums[call.layer], device=call.query.device)
        for r0, r1 in _chunks(max(self.row_start, offset), self.row_end, self.chunk_rows):
            pattern = call.pattern_rows(slice(r0 - offset, r1 - offset))[0]  # [heads, rows, T]
            by_key = pattern @ key_w  # [heads, rows, S]: key side reduced at once
            acc += key_w[r0:r1].T @ by_key  # [S, rows] @ [heads, rows, S] -> [heads, S, S]
        self.sums[call.layer] += acc.cpu()
        self.seen.add(call.layer)
        if self.on_layer is not None:
            self.on_layer(1)


def sentence_attention(
    model,
    tokens: torch.Tensor,
    ranges: TokenRanges,
    *,
    layers: Sequence[int] | None = None,
    chunk_rows: int = 256,
    on_progress: ProgressFn | None = None,
) -> np.ndarray:
    """Sentence x sentence attention of every head: [len(layers), heads, S, S] (float32).

    model: a HookedModel. tokens: [T] or [1, T] token ids, fed as-is (include BOS if the model needs it).
    ranges: S sentence token ranges into `tokens` (see module docstring).
    layers: which layers (default all); chunk_rows: query rows per softmax block (memory knob).
    on_progress(n): called once per layer processed.
    Entry [L, h, q, k] = mean attention of sentence q's tokens to sentence k's tokens; it is 0 for
    k > q (causal) and NaN where sentence q or k has no tokens.
    """
    attention_controls(model)  # fail before any work if the model cannot be intercepted
    tokens = as_sequence(tokens)
    n_tokens = tokens.shape[1]
    ranges = check_token_ranges(ranges, n_tokens)
    # Feed only up to the last sentence token: later tokens (the answer) cannot affect earlier rows.
    last = max(b for _, b in ranges)
    check_context(model, last)
    layers = list(range(model.cfg.n_layers)) if layers is None else [int(L) for L in layers]
    weights = sentence_weights(ranges, n_tokens)
    if not weights.any():
        raise TraceError("every sentence maps to zero tokens: check the token ranges against the token ids")
    reducer = _SentenceReducer(weights, model.cfg.n_heads, layers, chunk_rows, on_progress)
    with torch.no_grad(), observe_attention(model, reducer, layers):
        model.run_body(tokens[:, :last].to(model.device))
    missing = sorted(set(layers) - reducer.seen)
    if missing:
        raise HookError(
            f"attention of layers {missing} was not intercepted: this model's attention does not go through "
            "transformers' AttentionInterface; use an architecture thoughtlens supports "
            "(see thoughtlens.model.adapters)"
        )
    out = torch.stack([reducer.sums[L] for L in layers]).numpy()
    empty = [s for s, (a, b) in enumerate(ranges) if a == b]
    out[..., empty, :] = np.nan
    out[..., :, empty] = np.nan
    return out


def as_sequence(tokens: torch.Tensor) -> torch.Tensor:
    """tokens: [T] or [1, T] -> [1, T] LongTensor."""
    tokens = torch.as_tensor(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.shape[0] != 1:
        raise TraceError(
            f"tokens must be one sequence [T] or [1, T], got shape {tuple(tokens.shape)}: analyse traces one at a time"
        )
    return tokens.long()
