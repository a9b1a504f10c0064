"""A diffing pair: two HookedModels that share a tokenizer and a residual width, checked once.

    pair = load_pair(base_dir, finetuned_dir)          # or load_pair(base_model, finetuned_model)
    pair.base, pair.finetuned                          # HookedModels (fp32 by default: diffs are small)

Every diffing tool takes a `ModelPair`, so the checks (same tokenizer, same d_model / layers / vocabulary) run
before any work and fail with one line that names the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from thoughtlens.errors import ConfigError
from thoughtlens.model.hooked_model import HookedModel

ModelLike = HookedModel | str | os.PathLike


@dataclass
class ModelPair:
    """base and finetuned: HookedModels with the same tokenizer and shapes (see `check_pair`)."""

    base: HookedModel
    finetuned: HookedModel

    @property
    def n_layers(self) -> int:
        return self.base.cfg.n_layers

    @property
    def d_model(self) -> int:
        return self.base.cfg.d_model

    @property
    def tokenizer(self):
        return self.base.tokenizer

    def models(self) -> tuple[HookedModel, HookedModel]:
        return self.base, self.finetuned


def check_pair(base: HookedModel, finetuned: HookedModel) -> None:
    """Raise a one-line ConfigError unless the two models can be diffed token by token and layer by layer:
    same tokenizer (vocabulary, merges, special tokens, chat template), same vocabulary size, d_model and
    number of layers."""
    from thoughtlens.model.load import tokenizer_identity

    a, b = base.cfg, finetuned.cfg
    if base.tokenizer is None or finetuned.tokenizer is None:
        raise ConfigError("both models need a tokenizer to be diffed: load them with thoughtlens.load(path)")
    if tokenizer_identity(base.tokenizer) != tokenizer_identity(finetuned.tokenizer):
        raise ConfigError(
            f"{base.name} and {finetuned.name} have different tokenizers: diff a model against a "
            "fine-tune of itself (same tokenizer)"
        )
    for what, x, y in (
        ("d_model", a.d_model, b.d_model),
        ("n_layers", a.n_layers, b.n_layers),
        ("d_vocab", a.d_vocab, b.d_vocab),
    ):
        if x != y:
            raise ConfigError(
                f"{base.name} and {finetuned.name} differ in {what} ({x} vs {y}): diffing needs two "
                "models of the same architecture and size"
            )


def as_model(model: ModelLike, dtype: torch.dtype | str | None = torch.float32) -> HookedModel:
    """A HookedModel from a HookedModel (returned as is) or a model path / hub id (loaded in `dtype`)."""
    if isinstance(model, HookedModel):
        return model
    from thoughtlens.model.load import load

    return load(model, dtype=dtype)


def load_pair(base: ModelLike, finetuned: ModelLike, dtype: torch.dtype | str | None = torch.float32) -> ModelPair:
    """Load (if given paths) and check a pair. fp32 by default: fine-tuning differences are small and bf16's
    rounding would drown some of them."""
    b, f = as_model(base, dtype), as_model(finetuned, dtype)
    check_pair(b, f)
    return ModelPair(b, f)
