"""Training tiny models on CPU: a seeded, resumable trainer with log-spaced safetensors checkpoints
(trainer.py), measures over a checkpoint series (checkpoints.py), and grokking (grokking.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports

_EXPORTS = {
    "TrainerConfig": "thoughtlens.train.trainer",
    "Trainer": "thoughtlens.train.trainer",
    "TrainResult": "thoughtlens.train.trainer",
    "Checkpoints": "thoughtlens.train.checkpoints",
    "GrokkingConfig": "thoughtlens.train.grokking",
    "train_grokking": "thoughtlens.train.grokking",
    "grokking_measures": "thoughtlens.train.grokking",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.train.checkpoints import Checkpoints
    from thoughtlens.train.grokking import GrokkingConfig, grokking_measures, train_grokking
    from thoughtlens.train.trainer import Trainer, TrainerConfig, TrainResult
