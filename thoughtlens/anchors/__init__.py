"""Thought Anchors (Bogdan et al. 2025) and Thought Branches (Macar et al. 2025): which chain-of-thought
steps matter, by resampling (`importance`), by attention (`attention`), and by editing the trace (`branches`),
for any outcome (`outcomes`). The run's configuration lives in `anchors.config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports

_EXPORTS = {
    "AnchorsConfig": "thoughtlens.anchors.config",
    "Problem": "thoughtlens.anchors.config",
    "config_record": "thoughtlens.anchors.config",
    "validate_config": "thoughtlens.anchors.config",
    "load_problems": "thoughtlens.anchors.problems",
    "AnchorsRun": "thoughtlens.anchors.importance.black_box",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.anchors.config import AnchorsConfig, Problem, config_record, validate_config
    from thoughtlens.anchors.importance.black_box import AnchorsRun
    from thoughtlens.anchors.problems import load_problems
