"""Thought Branches (Macar et al. 2025): experiments that edit a stored trace at one sentence and
resample: resilience and counterfactual++, on-/off-policy sentence edits, and transplanting a hinted CoT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports

_EXPORTS = {
    "BranchPoint": "thoughtlens.anchors.branches.branch_point",
    "branch_point": "thoughtlens.anchors.branches.branch_point",
    "ResilienceConfig": "thoughtlens.anchors.branches.resilience",
    "ResilienceResult": "thoughtlens.anchors.branches.resilience",
    "measure_resilience": "thoughtlens.anchors.branches.resilience",
    "InterventionConfig": "thoughtlens.anchors.branches.policy_edits",
    "InterventionResult": "thoughtlens.anchors.branches.policy_edits",
    "measure_interventions": "thoughtlens.anchors.branches.policy_edits",
    "resolve_target": "thoughtlens.anchors.branches.policy_edits",
    "TransplantConfig": "thoughtlens.anchors.branches.transplant",
    "run_transplant": "thoughtlens.anchors.branches.transplant",
    "load_hinted_problems": "thoughtlens.anchors.branches.transplant",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.anchors.branches.branch_point import BranchPoint, branch_point
    from thoughtlens.anchors.branches.policy_edits import (
        InterventionConfig,
        InterventionResult,
        measure_interventions,
        resolve_target,
    )
    from thoughtlens.anchors.branches.resilience import ResilienceConfig, ResilienceResult, measure_resilience
    from thoughtlens.anchors.branches.transplant import TransplantConfig, load_hinted_problems, run_transplant
