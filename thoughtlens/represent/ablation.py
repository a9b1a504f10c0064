"""Directional ablation: remove a direction from the residual stream, by hooks or by editing the weights.

    with ablate_direction(model, refusal_dir):              # hooks, for this block only
        text = model.generate(prompt)
    path = orthogonalize_weights(model, refusal_dir, "smol-no-refusal")   # a model directory
    edited = thoughtlens.load("smol-no-refusal")            # same logits as the hooked model (up to rounding)

Arditi et al. 2024, "Refusal in language models is mediated by a single direction" (repository
andyrdt/refusal_direction): the hook version projects the unit direction r out of every block's input
(resid_pre) and out of every attention and MLP output (`get_all_direction_ablation_hooks`,
pipeline/utils/hook_utils.py); the weight version orthogonalises every matrix that writes to the
residual stream, W <- W - r r^T W: the token (and position) embeddings and each layer's attention output
and MLP down projections (`orthogonalize_model_weights` in pipeline/model_utils/*_model.py). Both leave
every residual-stream vector orthogonal to r, so they compute the same function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from thoughtlens.errors import ConfigError
from thoughtlens.model.hooked_model import HookedModel, hf_causal_lm
from thoughtlens.model.interventions import project_out


def _unit(model, direction) -> torch.Tensor:
    d = torch.as_tensor(direction).detach().double().flatten()
    if d.shape[0] != model.cfg.d_model:
        raise ConfigError(
            f"the direction has width {d.shape[0]} but {model.name}'s residual stream has "
            f"d_model = {model.cfg.d_model}: compute it at a residual-stream hook of this model"
        )
    if not torch.isfinite(d).all() or d.norm() == 0:
        raise ConfigError("the direction is zero or not finite: check how it was computed")
    return d / d.norm()


@contextlib.contextmanager
def ablate_direction(model, direction, *, layers=None) -> Iterator[None]:
    """Project `direction` out of the residual stream everywhere while the block is open (hook version).

    layers: restrict to these blocks (default every block), e.g. to ablate in later layers only.
    """
    r = _unit(model, direction)  # float64; project_out computes in the model's precision (>= float32)
    layers = range(model.cfg.n_layers) if layers is None else layers
    with contextlib.ExitStack() as stack:
        for L in layers:
            for hook in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out"):
                stack.enter_context(project_out(model, f"blocks.{int(L)}.{hook}", r))
        yield


def _orthogonalize_output(module: nn.Module, r: torch.Tensor) -> None:
    """Make `module`'s output orthogonal to r in place: nn.Linear ([out, in]), Conv1D ([in, out]) or Embedding.

    r: unit vector, float64. The edit is computed in float64 and rounded once to the weight's dtype, so
    the edited weights are the exact projection up to one rounding (the hook version rounds per forward).
    """
    with torch.no_grad():
        for p in (module.weight, getattr(module, "bias", None)):
            if p is None:
                continue
            w, r = p.double(), r.to(p.device)
            if p.ndim == 1:  # bias [d_model]
                w = w - (w @ r) * r
            elif type(module).__name__ == "Conv1D" or isinstance(module, nn.Embedding):
                w = (
                    w - (w @ r)[:, None] * r[None, :]
                )  # rows are output vectors: Conv1D W [in, out], Embedding [vocab, d]
            else:  # nn.Linear: y = x @ W^T + b, W [out, in]
                w = w - r[:, None] * (r @ w)[None, :]
            p.copy_(w.to(p.dtype))


def orthogonalized_model(model, direction) -> HookedModel:
    """A copy of `model` (a new HookedModel) whose residual-stream writers are orthogonal to `direction`.

    Tied input / output embeddings are untied first (only the embedding is edited, as in Arditi et al.).
    """
    a = model.adapter
    if a.attn_out != a.o_proj.split(".")[0] and a.attn_out != a.o_proj:
        raise ConfigError(
            f"{a.name} normalises attention / MLP outputs after their projections (sandwich norms), "
            "so editing the projections does not remove the direction: use ablate_direction (hooks)"
        )
    r = _unit(model, direction)
    edited = model.copy(untie_embeddings=True)
    _orthogonalize_output(edited.submodule(a.embed), r)
    if a.pos_embed:
        _orthogonalize_output(edited.submodule(a.pos_embed), r)
    for L in range(edited.cfg.n_layers):
        _orthogonalize_output(edited.submodule(a.o_proj, layer=L), r)
        _orthogonalize_output(edited.submodule(a.mlp_down, layer=L), r)
    return edited


def orthogonalized_hf_model(model, direction) -> nn.Module:
    """The Hugging Face causal LM of `orthogonalized_model(model, direction)`, for code that wraps it itself."""
    return hf_causal_lm(orthogonalized_model(model, direction))


def orthogonalize_weights(model, direction, out_dir: str | Path) -> Path:
    """Save a model directory (safetensors + tokenizer) with `direction` orthogonalised out of the weights.

    `thoughtlens.load(out_dir)` opens it like any other model (plain transformers too).
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty: pass a new directory")
    return orthogonalized_model(model, direction).save_pretrained(out)
