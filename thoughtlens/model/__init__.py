"""Models: loading, hook points, the attention function, interventions."""

from thoughtlens.model.cache import ActivationCache
from thoughtlens.model.hook_points import HookPoint
from thoughtlens.model.hooked_model import HookedModel
from thoughtlens.model.interventions import (
    add_direction,
    block_keys,
    edit_pattern,
    observe_attention,
    project_out,
    splice,
    stop_gradient,
)
from thoughtlens.model.load import load

__all__ = [
    "ActivationCache",
    "HookPoint",
    "HookedModel",
    "load",
    "add_direction",
    "block_keys",
    "edit_pattern",
    "observe_attention",
    "project_out",
    "splice",
    "stop_gradient",
]
