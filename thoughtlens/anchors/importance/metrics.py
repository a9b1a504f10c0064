"""Black-box sentence importance from rollouts (Thought Anchors, Bogdan et al. 2025, section 3).

Prefix positions k = 0..n for a trace with sentences S_0..S_{n-1}:
    prefix_k = the text before S_k for k < n   (S_k and everything after it removed; see
                                                ReasoningTrace.rollout_prefix for where exactly it ends)
    prefix_n = the text through S_{n-1}        (the whole reasoning kept)
R_k are the rollouts sampled from prefix_k, F_k the forced-answer rollouts from prefix_k + a suffix
that asks for the answer at once. Rollouts from prefix_{i+1} keep S_i ("kept"); rollouts from
prefix_i resample it ("resampled"). One set of rollouts per position serves both conditions, as in
the paper's code (its chunk_{i+1} rollouts are its "kept" set), and the "regenerate from the first
K sentences" curve is simply acc(R_K) for K = 0..n.

The metrics themselves (accuracy, resampling / counterfactual / forced importance in accuracy and KL,
different_trajectories_fraction, overdeterminedness) are defined in `thoughtlens.anchors.importance.definitions`,
under two named conventions: "paper" (the default: the paper's analyze_rollouts.py, exactly) and
"thoughtlens" (this library's pre-1.0 choices).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from thoughtlens.anchors.importance.definitions import (
    DEFAULT_CONVENTIONS,
    NO_ANSWER,
    Outcome,
    check_conventions,
    default_kl_alpha,
    paper_accuracy,
    paper_sentence_row,
    smoothed_kl,
    thoughtlens_accuracy,
    thoughtlens_answer_counts,
    thoughtlens_sentence_row,
)
from thoughtlens.anchors.importance.similarity import DEFAULT_THRESHOLD, embed_sentences
from thoughtlens.trace.answers import normalize_answer

__all__ = [
    "NO_ANSWER",
    "Outcome",
    "IMPORTANCE_METRICS",
    "METRIC_COLUMNS",
    "accuracy",
    "answer_counts",
    "smoothed_kl",
    "sentence_metrics",
    "regeneration_curve",
    "DEFAULT_KL_ALPHA",
]

DEFAULT_KL_ALPHA = default_kl_alpha(DEFAULT_CONVENTIONS)

IMPORTANCE_METRICS = (
    "resampling_importance_accuracy",
    "resampling_importance_kl",
    "counterfactual_importance_accuracy",
    "counterfactual_importance_kl",
    "forced_importance_accuracy",
    "forced_importance_kl",
)
METRIC_COLUMNS = (
    "accuracy",
    *IMPORTANCE_METRICS,
    "different_trajectories_fraction",
    "overdeterminedness",
    "n_rollouts",
    "n_dissimilar",
)


def answer_counts(outcomes: Sequence[Outcome]) -> Counter:
    """Counts of normalised answers; a missing answer is its own outcome, NO_ANSWER (thoughtlens conventions)."""
    return thoughtlens_answer_counts(outcomes)


def accuracy(outcomes: Sequence[Outcome], conventions: str = "thoughtlens") -> float | None:
    """Share of correct rollouts. "thoughtlens": over all rollouts (missing answer = wrong), None for none;
    "paper": over answered rollouts, 0.0 when none answered (analyze_rollouts.py:analyze_problem)."""
    check_conventions(conventions)
    return paper_accuracy(outcomes) if conventions == "paper" else thoughtlens_accuracy(outcomes)


def sentence_metrics(
    sentences: Sequence[str],
    resampled: Sequence[Sequence[Outcome]],
    forced: Sequence[Sequence[Outcome]] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float | None = None,
    similarities: Sequence[np.ndarray] | None = None,
    conventions: str = DEFAULT_CONVENTIONS,
) -> list[dict[str, float | None]]:
    """Metrics for each sentence, one dict per sentence with the keys of METRIC_COLUMNS.

    sentences: S_0..S_{n-1}; resampled: R_0..R_n (n + 1 lists); forced: F_0..F_n or None.
    similarities: optional precomputed cosine similarities `[len(R_i)]` of R_i's first sentences to S_i
    (NaN where a rollout wrote no sentence). alpha: KL smoothing, None = the conventions' value
    (paper 1e-9, thoughtlens 0.5). conventions: "paper" (default) or "thoughtlens", see
    `thoughtlens.anchors.importance.definitions`.
    """
    check_conventions(conventions)
    alpha = default_kl_alpha(conventions) if alpha is None else alpha
    if alpha <= 0:
        raise ValueError(f"KL smoothing alpha must be > 0 (got {alpha}); the paper uses 1e-9, thoughtlens 0.5")
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(
            f"similarity threshold {threshold} is outside [-1, 1]; cosine similarity lies in [-1, 1] "
            "(the paper uses 0.8)"
        )
    n = len(sentences)
    if len(resampled) != n + 1:
        raise ValueError(f"need rollouts for {n + 1} prefix positions (0..{n}), got {len(resampled)}")
    if forced is not None and len(forced) != n + 1:
        raise ValueError(f"need forced rollouts for {n + 1} prefix positions, got {len(forced)}")
    if similarities is None:
        similarities = all_similarities(sentences, resampled)
    rows = []
    for i in range(n):
        r_i = resampled[i]
        sims = np.asarray(similarities[i], dtype=float)
        if sims.shape != (len(r_i),):
            raise ValueError(f"similarities[{i}] has shape {sims.shape}, expected ({len(r_i)},): one per rollout")
        if conventions == "paper":
            rows.append(paper_sentence_row(i, n, resampled, forced, sims, threshold, alpha))
        else:
            rows.append(thoughtlens_sentence_row(i, resampled, forced, sims, threshold, alpha))
    return rows


def all_similarities(sentences: Sequence[str], resampled: Sequence[Sequence[Outcome]]) -> list[np.ndarray]:
    """Cosine similarity of each R_i rollout's first sentence to S_i (NaN where it wrote none), with every
    string embedded in one batch."""
    firsts = [
        [
            o.first_sentence if isinstance(o.first_sentence, str) and o.first_sentence.strip() else None
            for o in resampled[i]
        ]
        for i in range(len(sentences))
    ]
    texts = list(sentences) + [f for row in firsts for f in row if f is not None]
    if len(texts) == len(sentences):
        return [np.full(len(row), np.nan) for row in firsts]
    vectors = embed_sentences(texts)
    sims, k = [], len(sentences)
    for i, row in enumerate(firsts):
        out = np.full(len(row), np.nan)
        for r, f in enumerate(row):
            if f is not None:
                out[r] = float(vectors[k] @ vectors[i])
                k += 1
        sims.append(out)
    return sims


def regeneration_curve(
    resampled: Sequence[Sequence[Outcome]], base_answer: str | None, conventions: str = "thoughtlens"
) -> list[dict]:
    """Accuracy and agreement with the base trace's answer when regenerating from the first K sentences.
    Agreement is over all rollouts; accuracy follows `conventions` (see `accuracy`)."""
    base = normalize_answer(base_answer) if base_answer is not None else None
    curve = []
    for k, outcomes in enumerate(resampled):
        counts = answer_counts(outcomes)
        agree = counts.get(base, 0) / len(outcomes) if (outcomes and base is not None) else None
        curve.append(
            {
                "k": k,
                "accuracy": accuracy(outcomes, conventions) if outcomes else None,
                "agreement": agree,
                "n": len(outcomes),
            }
        )
    return curve
