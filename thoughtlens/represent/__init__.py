"""Representations: per-sentence activations, directions, probes, steering and directional ablation.

One concept per file: sentence_activations.py, directions.py, probes.py, steering.py, ablation.py,
refusal.py (the refusal prompt set and phrase matcher of the small refusal reproduction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports

_EXPORTS = {
    "SentenceActivations": "thoughtlens.represent.sentence_activations",
    "sentence_activations": "thoughtlens.represent.sentence_activations",
    "token_ranges": "thoughtlens.represent.sentence_activations",
    "collect": "thoughtlens.represent.sentence_activations",
    "direction": "thoughtlens.represent.directions",
    "diff_in_means": "thoughtlens.represent.directions",
    "pca_direction": "thoughtlens.represent.directions",
    "probe_direction": "thoughtlens.represent.directions",
    "direction_sweep": "thoughtlens.represent.directions",
    "held_out_auroc": "thoughtlens.represent.directions",
    "ProbeResult": "thoughtlens.represent.probes",
    "fit_probe": "thoughtlens.represent.probes",
    "layer_sweep": "thoughtlens.represent.probes",
    "SteeringResult": "thoughtlens.represent.steering",
    "steering_effect": "thoughtlens.represent.steering",
    "ablate_direction": "thoughtlens.represent.ablation",
    "orthogonalized_model": "thoughtlens.represent.ablation",
    "orthogonalize_weights": "thoughtlens.represent.ablation",
    "refusal_prompts": "thoughtlens.represent.refusal",
    "refusal_direction": "thoughtlens.represent.refusal",
    "refusal_rate": "thoughtlens.represent.refusal",
    "is_refusal": "thoughtlens.represent.refusal",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.represent.ablation import ablate_direction, orthogonalize_weights, orthogonalized_model
    from thoughtlens.represent.directions import (
        diff_in_means,
        direction,
        direction_sweep,
        held_out_auroc,
        pca_direction,
        probe_direction,
    )
    from thoughtlens.represent.probes import ProbeResult, fit_probe, layer_sweep
    from thoughtlens.represent.refusal import is_refusal, refusal_direction, refusal_prompts, refusal_rate
    from thoughtlens.represent.sentence_activations import (
        SentenceActivations,
        collect,
        sentence_activations,
        token_ranges,
    )
    from thoughtlens.represent.steering import SteeringResult, steering_effect
