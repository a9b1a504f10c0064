"""thoughtlens: mechanistic interpretability for reasoning models.

    import thoughtlens
    model = thoughtlens.load()            # the bundled SmolLM2-135M-Instruct
    logits, cache = model.run_with_cache("Hello", names_filter="resid_post")

The top-level names are imported lazily, so `import thoughtlens.store` (or the CLI) does not pay
for importing torch and transformers until a model is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports
from thoughtlens.version import __version__

_EXPORTS = {
    "ActivationCache": "thoughtlens.model.cache",
    "HookedModel": "thoughtlens.model.hooked_model",
    "HookPoint": "thoughtlens.model.hook_points",
    "load": "thoughtlens.model.load",
    "load_sae": "thoughtlens.sae.io",
    "ThoughtlensError": "thoughtlens.errors",
    "run_anchors": "thoughtlens.pipeline.anchors",
}
__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.errors import ThoughtlensError
    from thoughtlens.model.cache import ActivationCache
    from thoughtlens.model.hook_points import HookPoint
    from thoughtlens.model.hooked_model import HookedModel
    from thoughtlens.model.load import load
    from thoughtlens.pipeline.anchors import run_anchors
    from thoughtlens.sae.io import load_sae
