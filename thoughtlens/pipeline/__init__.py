"""Pipelines: whole jobs built from the library's steps (the layer above `report/`, below the CLI)."""

from thoughtlens.pipeline.anchors import AnchorsResult, make_problems, run_anchors

__all__ = ["AnchorsResult", "make_problems", "run_anchors"]
