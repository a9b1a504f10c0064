"""Resampled alternatives of each sentence, deduplicated, counted, and flagged similar / dissimilar
to the original by sentence-embedding cosine (all-MiniLM-L6-v2, as in the paper)."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

from thoughtlens.anchors.importance.similarity import DEFAULT_THRESHOLD, embed_sentences

# The paper calls a resample "similar" at cosine >= 0.8 with all-MiniLM-L6-v2 (same as anchors).
SIMILARITY_THRESHOLD = DEFAULT_THRESHOLD
MAX_ALTERNATIVES = 12

Embedder = Callable[[list[str]], np.ndarray]  # texts -> [n_texts, d_embed]


def minilm_embedder() -> Embedder:
    """all-MiniLM-L6-v2 on CPU (offline package, loaded once): texts -> unit-norm [n, 384]."""
    return embed_sentences


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so a dot product is the cosine (zero rows stay zero)."""
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1.0, norms)


def alternatives_for_trace(
    originals: list[str],
    resamples: list[list[str] | None],
    *,
    embed: Embedder | None,
    threshold: float = SIMILARITY_THRESHOLD,
    max_items: int = MAX_ALTERNATIVES,
) -> list[list[dict] | None]:
    """Per sentence: up to `max_items` distinct resampled replacements, most frequent first.

    originals: [S] sentence texts; resamples: [S] lists of replacement texts (None = not resampled).
    Each item is {text, count, similarity, similar}; similarity/similar are None when embed is None.
    All texts are embedded in one call, which is far faster than one call per sentence.
    """
    grouped: list[list[tuple[str, int]] | None] = []
    for texts in resamples:
        if texts is None:
            grouped.append(None)
            continue
        counts = Counter(t.strip() for t in texts if t and t.strip())
        grouped.append(counts.most_common(max_items))
    sims = _similarities(originals, grouped, embed) if embed is not None else None
    out: list[list[dict] | None] = []
    for i, items in enumerate(grouped):
        if items is None:
            out.append(None)
            continue
        row = []
        for j, (text, count) in enumerate(items):
            sim = None if sims is None else round(float(sims[i][j]), 3)
            row.append(
                {
                    "text": text,
                    "count": count,
                    "similarity": sim,
                    "similar": None if sim is None else bool(sim >= threshold),
                }
            )
        out.append(row)
    return out


def _similarities(
    originals: list[str], grouped: list[list[tuple[str, int]] | None], embed: Embedder
) -> list[list[float]]:
    """Cosine of each alternative with its original sentence, via one batched embed call."""
    texts = list(originals)
    for items in grouped:
        texts.extend(t for t, _ in items or [])
    vectors = _unit(np.asarray(embed(texts), dtype=float))
    base, cursor, sims = vectors[: len(originals)], len(originals), []
    for i, items in enumerate(grouped):
        k = len(items or [])
        sims.append((vectors[cursor : cursor + k] @ base[i]).tolist())
        cursor += k
    return sims
