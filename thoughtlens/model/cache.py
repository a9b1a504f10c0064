"""ActivationCache: what `run_with_cache` returns. A read-only dict of hook name -> tensor."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping

import torch

from thoughtlens.errors import HookError

_LAYER = re.compile(r"^blocks\.(\d+)\.")

# Short names, TransformerLens-style: cache["resid_post", 3] == cache["blocks.3.hook_resid_post"].
_SHORT = {
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "pattern": "attn.hook_pattern",
    "post": "mlp.hook_post",
    "normalized1": "ln1.hook_normalized",
    "normalized2": "ln2.hook_normalized",
}


def layer_of(name: str) -> int | None:
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None


def full_name(short: str, layer: int) -> str:
    """("resid_post", 3) -> "blocks.3.hook_resid_post"; ("pattern", 0) -> "blocks.0.attn.hook_pattern"."""
    return f"blocks.{layer}.{_SHORT.get(short, 'hook_' + short.removeprefix('hook_'))}"


class ActivationCache(Mapping[str, torch.Tensor]):
    """Activations keyed by hook name. Shapes follow the hook's docstring, e.g.
    `cache["blocks.0.hook_resid_post"]: [batch, pos, d_model]`.

    `cache["resid_post", 3]` is shorthand for `cache["blocks.3.hook_resid_post"]`.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self._tensors = dict(tensors)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, tuple):
            key = full_name(*key)
        try:
            return self._tensors[key]
        except KeyError:
            raise HookError(
                f"'{key}' is not in this cache (it holds {len(self)} hooks); pass it in names_filter"
            ) from None

    def __contains__(self, key) -> bool:
        return (full_name(*key) if isinstance(key, tuple) else key) in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hooks: {', '.join(list(self)[:4])}{', ...' if len(self) > 4 else ''})"

    def stack(self, pattern: str) -> torch.Tensor:
        """Stack one hook across layers: `stack("resid_post")` -> [layer, batch, pos, d_model].

        `pattern` is a short name ("resid_post", "pattern", "z") or a glob over full names
        ("blocks.*.hook_resid_post"). Layers are stacked in order.
        """
        glob = (
            pattern
            if ("*" in pattern or "." in pattern)
            else full_name(pattern, 0).replace("blocks.0.", "blocks.*.", 1)
        )
        names = sorted((n for n in self._tensors if fnmatch.fnmatchcase(n, glob)), key=lambda n: layer_of(n) or -1)
        if not names:
            raise HookError(f"no cached hook matches '{pattern}'; cached: {', '.join(list(self)[:6])}...")
        return torch.stack([self._tensors[n] for n in names])

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "ActivationCache":
        """A copy with every tensor moved (and optionally cast)."""
        return ActivationCache({k: v.to(device=device, dtype=dtype) for k, v in self._tensors.items()})

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors.values())
