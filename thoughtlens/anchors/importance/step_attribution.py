"""The sentence-to-sentence black-box graph (Thought Anchors' step attribution): for a source sentence
S_i and a later target S_j, how much keeping S_i (vs resampling it) changes whether S_j's content
reappears in the rollouts.

Reproduces ../shared/reference/thought-anchors/importance/step_attribution.py:compute_step_importance_matrix:

    M[i, j] = match_rate(R_{i+1}, S_j) - match_rate(R_i, S_j)     for j > i, i < n - 1; 0 elsewhere
    match_rate(R, S_j) = share of rollouts in R (those with non-empty text) holding at least one
                         sentence with cosine similarity >= threshold (0.8, their CLI default) to S_j
                         under all-MiniLM-L6-v2; a rollout's sentences are its reasoning (before
                         `</think>`) split as `split_solution_into_chunks` does (`split_style="paper"`).
    A row is all zeros when R_i or R_{i+1} has no sentence at all (their `continue`).

Rows are the cause (source) and columns the affected (target) sentence, as the report's
`counterfactual_matrix` artifact expects. Published graphs: `step_importance.json`
(see `from_step_importance_json`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from thoughtlens.trace.split import rollout_sentences

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> unit-length rows [n, d]


def _rollout_steps(rollouts: Sequence[str], split_style: str) -> tuple[int, list[str], list[int]]:
    """(#rollouts with text, their sentences, owner rollout of each sentence)."""
    texts = [t for t in rollouts if isinstance(t, str) and t]
    steps, owner = [], []
    for r, text in enumerate(texts):
        for s in rollout_sentences(text, split_style):
            steps.append(s)
            owner.append(r)
    return len(texts), steps, owner


def _rates(n_rollouts: int, owner: list[int], sims: np.ndarray, threshold: float) -> np.ndarray:
    """sims `[steps, targets]` -> `[targets]` share of rollouts with at least one step >= threshold."""
    matched = np.zeros((n_rollouts, sims.shape[1]), dtype=bool)
    np.logical_or.at(matched, np.asarray(owner, dtype=int), sims >= threshold)
    return matched.mean(axis=0)


def match_rates(
    targets: Sequence[str],
    rollouts: Sequence[str],
    *,
    threshold: float = 0.8,
    split_style: str = "paper",
    embed: Embed | None = None,
) -> np.ndarray | None:
    """`[len(targets)]` share of `rollouts` (empty texts dropped) with a sentence matching each target;
    None when the rollouts hold no sentence at all."""
    n_texts, steps, owner = _rollout_steps(rollouts, split_style)
    if not steps:
        return None
    vectors = (embed or _minilm)(list(targets) + steps)
    return _rates(n_texts, owner, vectors[len(targets) :] @ vectors[: len(targets)].T, threshold)


def counterfactual_matrix(
    sentences: Sequence[str],
    rollouts: Sequence[Sequence[str]],
    *,
    threshold: float = 0.8,
    split_style: str = "paper",
    embed: Embed | None = None,
) -> np.ndarray:
    """M `[n, n]` (see the module docstring). sentences: S_0..S_{n-1}; rollouts: texts of R_0..R_n
    (R_n is not needed and may be left out). Every sentence is embedded in one batch."""
    n = len(sentences)
    if len(rollouts) < n:
        raise ValueError(f"need rollout texts for at least {n} prefix positions (0..{n - 1}), got {len(rollouts)}")
    per_position = [_rollout_steps(rollouts[k], split_style) for k in range(n)]
    all_steps = [s for _, steps, _ in per_position for s in steps]
    matrix = np.zeros((n, n))
    if not all_steps or n == 0:
        return matrix
    vectors = (embed or _minilm)(list(sentences) + all_steps)
    targets, step_vectors = vectors[:n], vectors[n:]
    rates: list[np.ndarray | None] = []
    offset = 0
    for n_texts, steps, owner in per_position:
        block = step_vectors[offset : offset + len(steps)]
        offset += len(steps)
        rates.append(_rates(n_texts, owner, block @ targets.T, threshold) if steps else None)
    for i in range(n - 1):
        kept, removed = rates[i + 1], rates[i]
        if kept is None or removed is None:
            continue
        matrix[i, i + 1 :] = kept[i + 1 :] - removed[i + 1 :]
    return matrix


def from_step_importance_json(records: list[dict], n: int | None = None) -> np.ndarray:
    """The published `step_importance.json` (a list of {source_chunk_idx, target_impacts: [{target_chunk_idx,
    importance_score}]}) as a `[n, n]` matrix, row = source."""
    size = n if n is not None else len(records)
    matrix = np.zeros((size, size))
    for rec in records:
        i = int(rec["source_chunk_idx"])
        for t in rec.get("target_impacts") or []:
            j = int(t["target_chunk_idx"])
            if not (0 <= i < size and 0 <= j < size):
                raise ValueError(
                    f"step_importance.json names chunk ({i}, {j}) outside 0..{size - 1}; "
                    "pass the chunks_labeled.json of the same problem"
                )
            matrix[i, j] = float(t["importance_score"])
    return matrix


def _minilm(texts: Sequence[str]) -> np.ndarray:
    from thoughtlens.anchors.importance.similarity import embed_sentences

    return embed_sentences(texts)
