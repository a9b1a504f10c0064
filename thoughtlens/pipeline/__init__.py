"""Pipelines: whole jobs built from the library's steps (the layer above `report/`, below the CLI)."""

from thoughtlens.pipeline.anchors import AnchorsResult, make_problems, run_anchors
from thoughtlens.pipeline.runtime import Runtime, RuntimeOptions, build_runtime

__all__ = ["AnchorsResult", "Runtime", "RuntimeOptions", "build_runtime", "make_problems", "run_anchors"]
