"""thoughtlens: mechanistic interpretability for reasoning models.

    import thoughtlens
    model = thoughtlens.load()            # the bundled SmolLM2-135M-Instruct
    logits, cache = model.run_with_cache("Hello", names_filter="resid_post")

The top-level names are imported lazily, so `import thoughtlens.store` (or the CLI) does not pay
for importing torch and transformers until a model is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from thoughtlens.version import __version__

__all__ = ["ActivationCache", "HookedModel", "HookPoint", "ThoughtlensError", "load", "load_sae", "run_anchors"]

_LAZY = {
    "ActivationCache": "thoughtlens.model.cache",
    "HookedModel": "thoughtlens.model.hooked_model",
    "HookPoint": "thoughtlens.model.hook_points",
    "load": "thoughtlens.model.load",
    "load_sae": "thoughtlens.sae.io",
    "ThoughtlensError": "thoughtlens.errors",
    "run_anchors": "thoughtlens.pipeline.anchors",
}

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.errors import ThoughtlensError
    from thoughtlens.model import ActivationCache, HookedModel, HookPoint, load
    from thoughtlens.pipeline.anchors import run_anchors


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'thoughtlens' has no attribute '{name}'")
