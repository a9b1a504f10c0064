"""Splicing an SAE into the model: a perfect (identity-like) SAE leaves logits unchanged; a real one
changes exactly the activation it replaces; keep_error restores the forward."""

from __future__ import annotations

import numerics
import pytest
import torch

from thoughtlens.errors import SAEError
from thoughtlens.sae import build_sae
from thoughtlens.sae.splice import splice_sae


def identity_sae(d: int, hook: str):
    """ReLU SAE with d_sae = 2d: latents (relu(x), relu(-x)), decoder (I; -I), so x_hat = x exactly."""
    sae = build_sae(architecture="standard", d_in=d, d_sae=2 * d, hook_name=hook, apply_b_dec_to_input=False).eval()
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.mark.slow
def test_identity_sae_leaves_bundled_model_logits_unchanged():
    import thoughtlens

    model = thoughtlens.load(dtype=torch.float32)
    hook = f"blocks.{model.cfg.n_layers // 2}.hook_resid_post"
    sae = identity_sae(model.cfg.d_model, hook)
    tokens = model.to_tokens(["The Eiffel Tower is in the city of Paris, which", "Seventeen plus twenty-five is"])
    clean = model(tokens)
    with splice_sae(model, sae):
        spliced = model(tokens)
    with splice_sae(model, sae, keep_error=True):
        kept = model(tokens)
    # exact, not close: x [I, -I] and its way back multiply by 1 and add exact zeros, so the reconstruction is x bit
    # for bit (and the error term x - x is 0); nothing downstream changes
    assert torch.equal(spliced, clean)
    assert torch.equal(kept, clean)


def test_random_sae_changes_exactly_its_hook(tiny_lm):
    torch.manual_seed(0)
    hook = "blocks.0.hook_resid_post"
    sae = build_sae(architecture="topk", d_in=tiny_lm.cfg.d_model, d_sae=64, k=4, hook_name=hook).eval()
    tokens = torch.tensor([[1, 5, 9, 13, 21, 3]])

    def manual(x, hook):  # the replacement, computed from the formula
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        kth = pre.sort(dim=-1, descending=True).values[..., 3:4]
        return torch.where(pre >= kth, pre, torch.zeros_like(pre)).clamp_min(0) @ sae.W_dec + sae.b_dec

    with torch.no_grad():
        expected = tiny_lm.run_with_hooks(tokens, [(hook, manual)])
        with splice_sae(tiny_lm, sae):
            got = tiny_lm(tokens)
        with splice_sae(tiny_lm, sae, keep_error=True):
            kept = tiny_lm(tokens)
        clean = tiny_lm(tokens)
    # the same SAE written twice, then the model's 2 layers: rounding at the logits' size
    depth = tiny_lm.cfg.n_layers + 2
    numerics.assert_close(got, expected, dtype=tiny_lm.dtype, depth=depth)
    assert (got - clean).abs().max() > 1e-3
    numerics.assert_close(kept, clean, dtype=tiny_lm.dtype, depth=depth)  # sae(x) + (x - sae(x)): x up to rounding


def test_splice_refuses_an_sae_for_another_width_or_hook(tiny_lm):
    wide = build_sae(architecture="topk", d_in=576, d_sae=64, k=4, hook_name="blocks.0.hook_resid_post")
    with pytest.raises(SAEError, match="trained on another model"):
        with splice_sae(tiny_lm, wide):
            pass
    elsewhere = build_sae(
        architecture="topk", d_in=tiny_lm.cfg.d_model, d_sae=64, k=4, hook_name="blocks.15.hook_resid_post"
    )
    with pytest.raises(SAEError, match="does not have"):
        with splice_sae(tiny_lm, elsewhere):
            pass
