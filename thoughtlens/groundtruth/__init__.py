"""Ground truth for attribution methods: a reasoning task whose anchors are known, and a benchmark that
scores the anchors pipeline against them (see docs/ground_truth.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports

_EXPORTS = {
    "TaskConfig": "thoughtlens.groundtruth.task",
    "Chain": "thoughtlens.groundtruth.task",
    "generate_chain": "thoughtlens.groundtruth.task",
    "parse_chain": "thoughtlens.groundtruth.task",
    "ToyModelConfig": "thoughtlens.groundtruth.toy_model",
    "train_toy_model": "thoughtlens.groundtruth.toy_model",
    "BenchConfig": "thoughtlens.groundtruth.benchmark",
    "BenchResult": "thoughtlens.groundtruth.benchmark",
    "run_benchmark": "thoughtlens.groundtruth.benchmark",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.groundtruth.benchmark import BenchConfig, BenchResult, run_benchmark
    from thoughtlens.groundtruth.task import Chain, TaskConfig, generate_chain, parse_chain
    from thoughtlens.groundtruth.toy_model import ToyModelConfig, train_toy_model
