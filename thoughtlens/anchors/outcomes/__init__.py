"""Outcomes: what importance is measured for, one value per rollout (maths correctness by default,
a regex, a sentence category, a Python function or an LLM judge).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_OUTCOME": "thoughtlens.anchors.outcomes.spec",
    "OutcomeSpec": "thoughtlens.anchors.outcomes.spec",
    "register_outcome": "thoughtlens.anchors.outcomes.spec",
    "unregister_outcome": "thoughtlens.anchors.outcomes.spec",
    "resolve_outcome": "thoughtlens.anchors.outcomes.spec",
    "check_outcome_spec": "thoughtlens.anchors.outcomes.spec",
    "outcome_label": "thoughtlens.anchors.outcomes.spec",
    "grade_texts": "thoughtlens.anchors.outcomes.spec",
    "JudgeOutcome": "thoughtlens.anchors.outcomes.judge",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.anchors.outcomes.judge import JudgeOutcome
    from thoughtlens.anchors.outcomes.spec import (
        DEFAULT_OUTCOME,
        OutcomeSpec,
        check_outcome_spec,
        grade_texts,
        outcome_label,
        register_outcome,
        resolve_outcome,
        unregister_outcome,
    )
