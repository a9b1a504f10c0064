"""Black-box importance: rollouts from every prefix of a trace, the paper's metrics (resampling,
counterfactual, forced-answer importance), adaptive budgets, categories and the step-to-step graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports

_EXPORTS = {
    "AnchorsRun": "thoughtlens.anchors.importance.black_box",
    "answer_complete": "thoughtlens.anchors.importance.black_box",
    "prefixes": "thoughtlens.anchors.importance.black_box",
    "stopping_rule": "thoughtlens.anchors.importance.black_box",
    "rollout_rule": "thoughtlens.anchors.importance.black_box",
    "is_thinking": "thoughtlens.anchors.importance.black_box",
    "IMPORTANCE_METRICS": "thoughtlens.anchors.importance.metrics",
    "sentence_metrics": "thoughtlens.anchors.importance.metrics",
    "regeneration_curve": "thoughtlens.anchors.importance.metrics",
    "accuracy": "thoughtlens.anchors.importance.metrics",
    "answer_counts": "thoughtlens.anchors.importance.metrics",
    "CONVENTIONS": "thoughtlens.anchors.importance.definitions",
    "DEFAULT_CONVENTIONS": "thoughtlens.anchors.importance.definitions",
    "Outcome": "thoughtlens.anchors.importance.definitions",
    "check_conventions": "thoughtlens.anchors.importance.definitions",
    "BudgetPolicy": "thoughtlens.anchors.importance.budget",
    "PositionStats": "thoughtlens.anchors.importance.budget",
    "importance_ci": "thoughtlens.anchors.importance.budget",
    "replay_run": "thoughtlens.anchors.importance.budget_replay",
    "AggregationRules": "thoughtlens.anchors.importance.by_category",
    "CategoryResults": "thoughtlens.anchors.importance.by_category",
    "analyze": "thoughtlens.anchors.importance.by_category",
    "load_store": "thoughtlens.anchors.importance.by_category",
    "load_published": "thoughtlens.anchors.importance.by_category",
    "embed_sentences": "thoughtlens.anchors.importance.similarity",
    "load_embedder": "thoughtlens.anchors.importance.similarity",
    "counterfactual_matrix": "thoughtlens.anchors.importance.step_attribution",
    "LOGODDS_METRICS": "thoughtlens.anchors.importance.logodds",
    "logodds": "thoughtlens.anchors.importance.logodds",
    "grade_problem": "thoughtlens.anchors.importance.outcome_grading",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.anchors.importance.black_box import (
        AnchorsRun,
        answer_complete,
        is_thinking,
        prefixes,
        rollout_rule,
        stopping_rule,
    )
    from thoughtlens.anchors.importance.budget import BudgetPolicy, PositionStats, importance_ci
    from thoughtlens.anchors.importance.budget_replay import replay_run
    from thoughtlens.anchors.importance.by_category import (
        AggregationRules,
        CategoryResults,
        analyze,
        load_published,
        load_store,
    )
    from thoughtlens.anchors.importance.definitions import CONVENTIONS, DEFAULT_CONVENTIONS, Outcome, check_conventions
    from thoughtlens.anchors.importance.logodds import LOGODDS_METRICS, logodds
    from thoughtlens.anchors.importance.metrics import (
        IMPORTANCE_METRICS,
        accuracy,
        answer_counts,
        regeneration_curve,
        sentence_metrics,
    )
    from thoughtlens.anchors.importance.outcome_grading import grade_problem
    from thoughtlens.anchors.importance.similarity import embed_sentences, load_embedder
    from thoughtlens.anchors.importance.step_attribution import counterfactual_matrix
