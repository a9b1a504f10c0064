"""Automatic head detectors. Each returns scores [layer, head] in [0, 1] (a share of attention).

A detector is a 0/1 mask M[b, i, j] over (query i, key j) pairs saying where the head "should" look,
and the query rows it applies to (rows with any M). The score of a head is its attention mass on M,
averaged over those rows and over the batch:  score = mean_{b, i: M[b,i,:] != 0} sum_j A[b, h, i, j] M[b, i, j].

  * previous-token: M[i, i - 1] (every row i >= 1).
  * duplicate-token: M[i, j] = 1 where j < i and token[j] == token[i] (rows whose token occurred before).
  * induction: M[i, j] = 1 where token[j - 1] == token[i] and j - 1 < i, i.e. the token *after* an
    earlier occurrence of the current token (rows whose token occurred before).
  * BOS / resting position: M[i, 0] (every row i >= 1): heads that park attention on the first token.

Defaults: repeated random tokens, `[BOS] + r + r` with r `seq_len` = 50 random non-special tokens,
batch 4, seed 0, so every token of the second half has exactly one earlier occurrence (up to
accidental repeats inside r). Patterns are reduced layer by layer inside hooks, never cached whole.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from thoughtlens.errors import ThoughtlensError

Mask = Callable[[torch.Tensor], torch.Tensor]  # tokens [b, pos] -> bool [b, q, k]


def repeated_random_tokens(model, seq_len: int = 50, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """tokens: [batch, 1 + 2 * seq_len] = BOS (if the model uses one), then r, then r again."""
    if seq_len < 2:
        raise ThoughtlensError(f"seq_len must be at least 2, got {seq_len}")
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    allowed = torch.tensor([i for i in range(model.cfg.d_vocab) if i not in special])
    g = torch.Generator().manual_seed(seed)
    r = allowed[torch.randint(len(allowed), (batch, seq_len), generator=g)]
    parts = [r, r]
    bos = getattr(model.tokenizer, "bos_token_id", None) if model.tokenizer is not None else None
    if bos is not None:
        parts.insert(0, torch.full((batch, 1), bos))
    return torch.cat(parts, dim=1).to(model.device)


def _causal(tokens: torch.Tensor) -> torch.Tensor:
    n = tokens.shape[1]
    return torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()


def previous_token_mask(tokens: torch.Tensor) -> torch.Tensor:
    n = tokens.shape[1]
    m = torch.zeros(n, n, dtype=torch.bool, device=tokens.device)
    m[torch.arange(1, n), torch.arange(n - 1)] = True
    return m.expand(tokens.shape[0], n, n)


def duplicate_token_mask(tokens: torch.Tensor) -> torch.Tensor:
    same = tokens[:, :, None] == tokens[:, None, :]  # [b, i, j]
    return same & _causal(tokens) & ~torch.eye(tokens.shape[1], dtype=torch.bool, device=tokens.device)


def induction_mask(tokens: torch.Tensor) -> torch.Tensor:
    dup = duplicate_token_mask(tokens)  # [b, i, j-1]: an earlier occurrence at j - 1
    m = torch.zeros_like(dup)
    m[:, :, 1:] = dup[:, :, :-1]  # shift to the token after it
    return m & _causal(tokens)


def bos_mask(tokens: torch.Tensor) -> torch.Tensor:
    n = tokens.shape[1]
    m = torch.zeros(n, n, dtype=torch.bool, device=tokens.device)
    m[1:, 0] = True
    return m.expand(tokens.shape[0], n, n)


DETECTORS: dict[str, Mask] = {
    "previous_token": previous_token_mask,
    "duplicate_token": duplicate_token_mask,
    "induction": induction_mask,
    "bos": bos_mask,
}


def detect(model, tokens: torch.Tensor | None = None, detectors=None) -> dict[str, torch.Tensor]:
    """Scores [layer, head] for each detector (default: all four) on `tokens` [batch, pos]
    (default: `repeated_random_tokens(model)`). See the module docstring for the definitions."""
    tokens = repeated_random_tokens(model) if tokens is None else model.as_tokens(tokens)
    names = list(DETECTORS) if detectors is None else list(detectors)
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise ThoughtlensError(f"unknown detector(s) {unknown}: use {', '.join(DETECTORS)}")
    masks = {n: DETECTORS[n](tokens).float() for n in names}
    rows = {n: m.sum(-1) > 0 for n, m in masks.items()}  # [b, q]: rows the detector applies to
    empty = [n for n, r in rows.items() if not r.any()]
    if empty:
        raise ThoughtlensError(
            f"detector(s) {empty} have nothing to score on these tokens: use repeated tokens "
            "(thoughtlens.circuits.heads.repeated_random_tokens)"
        )
    scores = {n: torch.zeros(model.cfg.n_layers, model.cfg.n_heads) for n in names}

    def reduce(pattern, hook):
        A = pattern.float()  # [b, h, q, k]
        for n in names:
            mass = torch.einsum("bhqk,bqk->bhq", A, masks[n])  # attention on the mask, per row
            scores[n][hook.layer()] = (mass * rows[n][:, None]).sum((0, 2)).cpu() / rows[n].sum().cpu()

    with torch.no_grad(), model.hooks([("blocks.*.attn.hook_pattern", reduce)]):
        model(tokens)
    return scores


def previous_token_scores(model, tokens=None) -> torch.Tensor:
    """[layer, head]: mean attention from each position to the one before it."""
    return detect(model, tokens, ["previous_token"])["previous_token"]


def duplicate_token_scores(model, tokens=None) -> torch.Tensor:
    """[layer, head]: mean attention to earlier copies of the current token (rows that have one)."""
    return detect(model, tokens, ["duplicate_token"])["duplicate_token"]


def induction_scores(model, tokens=None, *, seq_len: int = 50, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """[layer, head]: mean attention to the token after an earlier copy of the current token, on
    repeated random tokens (seq_len, batch, seed) unless `tokens` is given."""
    if tokens is None:
        tokens = repeated_random_tokens(model, seq_len, batch, seed)
    return detect(model, tokens, ["induction"])["induction"]


def bos_scores(model, tokens=None) -> torch.Tensor:
    """[layer, head]: mean attention to position 0 (BOS / resting position) from every later position."""
    return detect(model, tokens, ["bos"])["bos"]
