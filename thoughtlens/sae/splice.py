"""Splice an SAE into a model: its reconstruction replaces the activation at its hook while the block
is open, in every forward (`model(...)`, `run_with_cache`, `generate`, anchors rollouts).

    with splice_sae(model, sae):                         # reconstruction in place of the activation
        logits = model(tokens)
    with splice_sae(model, sae, keep_error=True):        # same logits; gradients through the features
        ...

SAEs go through `thoughtlens.model.interventions.splice`; a transcoder reads its input hook and writes
its output hook (`hook_name_out`), so it gets two hooks here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from thoughtlens.errors import SAEError
from thoughtlens.model.interventions import hook_width, splice
from thoughtlens.sae.base import SAE


class Reconstruction(nn.Module):
    """x -> sae's reconstruction of x, same shape (hook_z's [.., head, d_head] is flattened and back).

    skip_first: leave position 0 (the BOS token of a full sequence) as it is. Only meaningful for
    whole-sequence forwards; SAEs trained here never saw BOS activations (see activations.py).
    """

    def __init__(self, sae: SAE, skip_first: bool = False):
        super().__init__()
        self.sae, self.skip_first = sae, skip_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(*x.shape[:2], -1) if x.ndim == 4 else x
        out = self.sae.decode(self.sae.encode(flat)).reshape(x.shape)
        if self.skip_first and x.shape[1] > 0:
            out = torch.cat([x[:, :1], out[:, 1:]], dim=1)
        return out


def check_fits(model, sae: SAE) -> None:
    """SAEError unless `sae` reads (and writes) hooks of the model with matching widths."""
    if not sae.cfg.hook_name:
        raise SAEError("this SAE has no hook_name in its config: set sae.cfg.hook_name to the hook it was trained on")
    for name, width in (
        (sae.cfg.hook_name, sae.cfg.d_in),
        (sae.cfg.hook_name_out or sae.cfg.hook_name, sae.cfg.d_output),
    ):
        if name not in model.hook_names:
            raise SAEError(
                f"the SAE was trained on hook {name!r}, which {model.name} does not have: load the matching model"
            )
        have = hook_width(model, name)
        if name.endswith("hook_z"):
            have *= model.cfg.n_heads
        if have != width:
            raise SAEError(
                f"the SAE takes width {width} at {name!r} but {model.name} has {have} there: "
                "it was trained on another model"
            )


@contextlib.contextmanager
def splice_sae(model, sae: SAE, *, keep_error: bool = False, skip_first: bool = False) -> Iterator[SAE]:
    """Replace the activation at `sae.cfg.hook_name` by the SAE's reconstruction while the block is open.

    keep_error: add the reconstruction error back (detached), so the forward is unchanged while
    gradients flow through the SAE latents (SAELens `use_error_term`).
    skip_first: keep position 0 untouched (whole-sequence evaluation with a BOS token).
    """
    check_fits(model, sae)
    if sae.cfg.hook_name_out and sae.cfg.hook_name_out != sae.cfg.hook_name:
        with _splice_transcoder(model, sae, keep_error=keep_error, skip_first=skip_first):
            yield sae
        return
    with splice(model, sae.cfg.hook_name, Reconstruction(sae, skip_first), keep_error=keep_error):
        yield sae


@contextlib.contextmanager
def _splice_transcoder(model, sae: SAE, *, keep_error: bool, skip_first: bool) -> Iterator[None]:
    """Read `hook_name` (the MLP's input), replace `hook_name_out` (its output) by the transcoder's prediction."""
    seen: dict[str, torch.Tensor] = {}
    names = model.hook_names
    if names.index(sae.cfg.hook_name) >= names.index(sae.cfg.hook_name_out):
        raise SAEError(
            f"a transcoder's input hook {sae.cfg.hook_name!r} "
            f"must come before its output hook {sae.cfg.hook_name_out!r}"
        )

    def read(x, hook):
        seen["x"] = x

    def write(y, hook):
        x = seen.pop("x").to(sae.W_enc.dtype)
        out = sae.decode(sae.encode(x)).to(y.dtype)
        if keep_error:
            out = out + (y - out).detach()
        if skip_first:
            out = torch.cat([y[:, :1], out[:, 1:]], dim=1)
        return out

    with model.hooks([(sae.cfg.hook_name, read), (sae.cfg.hook_name_out, write)]):
        yield
