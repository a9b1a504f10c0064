"""The log-odds forms of the importance metrics (Thought Branches, Macar et al. 2025).

From ../shared/reference/thought-branches/whistleblowling/analyze_rollouts.py:

    p(S)  = (#True + eps) / (#known + 2 eps),  eps = 1e-8,  logit(p) = log(p / (1 - p))
    resampling_importance_logodds     = logit(p(R_{i+1})) - logit(p(R_i))
                                        (calculate_resampling_importance_logodds)
    counterfactual_importance_logodds = logit(p(dissimilar)) - logit(p(R_{i+1}))
                                        (calculate_counterfactual_importance_logodds; dissimilar as in
                                        anchors.importance.definitions, cosine < threshold to S_i)
    forced_importance_logodds         = logit(p(F_{i+1})) - logit(p(F_i))
                                        (calculate_forced_importance_logodds)

"Known" rollouts: those with a value (thoughtlens: an answer, see anchors.importance.definitions.answered); a
rollout graded True is `is_correct`. Edge cases as in their code: 0.0 for the last sentence, when a
side has no known rollout, or when there is no dissimilar resample.
Not reproduced: their `cf_fraction_threshold` (0.05) fallback that replaces counterfactual metrics by
resampling ones when <= 5 % of resamples are dissimilar (Thought Anchors' maths code has none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from thoughtlens.anchors.importance.definitions import Outcome, answered

EPS = 1e-8  # analyze_rollouts.py:calculate_*_importance_logodds
LOGODDS_METRICS = ("resampling_importance_logodds", "counterfactual_importance_logodds", "forced_importance_logodds")


def logodds(outcomes: Sequence[Outcome]) -> float | None:
    """logit of the smoothed rate of True among known rollouts; None when none is known."""
    known = answered(outcomes)
    if not known:
        return None
    p = (sum(o.is_correct is True for o in known) + EPS) / (len(known) + 2 * EPS)
    return math.log(p / (1 - p))


def _diff(a: float | None, b: float | None) -> float:
    return 0.0 if a is None or b is None else a - b


def logodds_row(
    i: int,
    n: int,
    resampled: Sequence[Sequence[Outcome]],
    forced: Sequence[Sequence[Outcome]] | None,
    sims: np.ndarray,
    threshold: float,
) -> dict[str, float | None]:
    """The three log-odds metrics of sentence i. sims: `[len(R_i)]` cosine similarity of each rollout's
    first sentence to S_i (NaN where none), as for anchors.importance.definitions.paper_sentence_row."""
    row: dict[str, float | None] = dict.fromkeys(LOGODDS_METRICS, 0.0)
    if forced is None:
        row["forced_importance_logodds"] = None
    if i + 1 >= n:  # the last sentence: no "next" set in the paper's code
        return row
    row["resampling_importance_logodds"] = _diff(logodds(resampled[i + 1]), logodds(resampled[i]))
    dissimilar = [o for o, s in zip(resampled[i], sims) if not np.isnan(s) and s < threshold]
    if dissimilar:
        row["counterfactual_importance_logodds"] = _diff(logodds(dissimilar), logodds(resampled[i + 1]))
    if forced is not None:
        row["forced_importance_logodds"] = _diff(logodds(forced[i + 1]), logodds(forced[i]))
    return row
