"""White-box thought anchors: sentence-level attention, receiver heads and attention suppression
(exact and approximate), over one trace or a set of traces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports

_EXPORTS = {
    "sentence_attention": "thoughtlens.anchors.attention.sentence_attention",
    "ReceiverHeadResult": "thoughtlens.anchors.attention.receiver_heads",
    "find_receiver_heads": "thoughtlens.anchors.attention.receiver_heads",
    "receiver_scores": "thoughtlens.anchors.attention.receiver_heads",
    "vertical_scores": "thoughtlens.anchors.attention.receiver_heads",
    "suppression_matrix": "thoughtlens.anchors.attention.suppression",
    "APPROX_METHODS": "thoughtlens.anchors.attention.suppression_approx",
    "suppression_matrix_approx": "thoughtlens.anchors.attention.suppression_approx",
    "WhiteBoxResult": "thoughtlens.anchors.attention.white_box",
    "analyze_attention": "thoughtlens.anchors.attention.white_box",
    "traces_from_store": "thoughtlens.anchors.attention.white_box",
    "load_trace_file": "thoughtlens.anchors.attention.white_box",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.anchors.attention.receiver_heads import (
        ReceiverHeadResult,
        find_receiver_heads,
        receiver_scores,
        vertical_scores,
    )
    from thoughtlens.anchors.attention.sentence_attention import sentence_attention
    from thoughtlens.anchors.attention.suppression import suppression_matrix
    from thoughtlens.anchors.attention.suppression_approx import APPROX_METHODS, suppression_matrix_approx
    from thoughtlens.anchors.attention.white_box import (
        WhiteBoxResult,
        analyze_attention,
        load_trace_file,
        traces_from_store,
    )
