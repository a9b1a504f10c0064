"""Directional ablation: hooks vs weight orthogonalisation (saved and reloaded), on tiny random models."""

from __future__ import annotations

import numerics
import pytest
import torch
from tiny_models import random_tokens, tiny_hf
from transformers import AutoModelForCausalLM

import thoughtlens
from thoughtlens import HookedModel
from thoughtlens.errors import ConfigError
from thoughtlens.represent.ablation import ablate_direction, orthogonalize_weights, orthogonalized_hf_model

pytestmark = pytest.mark.slow  # saves and reloads model directories


def _direction(d: int = 32, seed: int = 3) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed)) * 5


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_orthogonalised_weights_give_the_hook_ablated_logits(arch, tmp_path):
    hf = tiny_hf(arch)
    if arch == "llama":  # tied input/output embeddings must be untied, not both edited
        hf.config.tie_word_embeddings = True
        hf.lm_head.weight = hf.model.embed_tokens.weight
    model = HookedModel(hf)
    r = _direction()
    tokens = random_tokens(2, 16)
    clean = model(tokens)
    with ablate_direction(model, r):
        hooked = model(tokens)
    path = orthogonalize_weights(model, r, tmp_path / "edited")
    edited = thoughtlens.load(str(path), dtype=torch.float32)
    got = edited(tokens)
    n = model.cfg.n_layers
    # the same function computed two ways in float32 (next test): rounding at the logits' size through n layers
    numerics.assert_close(got, hooked, dtype=torch.float32, depth=n)
    assert (got - clean).abs().max() > 1e-2  # the ablation changes the model
    # a plain HF load (no thoughtlens) of the directory gives the same logits: the same forward, bit for bit
    plain = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(plain(tokens).logits, got)
    # and every residual-stream vector of the edited model is orthogonal to r
    _, cache = edited.run_with_cache(tokens, names_filter="resid_post")
    unit = r / r.norm()
    for name, act in cache.items():
        cos = (act @ unit) / act.norm(dim=-1)
        # each layer writes W' x with r^T W' = 0 up to float32 rounding: a component of eps |act| along r per layer
        numerics.assert_close(cos, torch.zeros_like(cos), dtype=torch.float32, depth=n, scale=1.0, msg=name)
    # the original model is untouched
    torch.testing.assert_close(model(tokens), clean, atol=0, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_orthogonalised_weights_equal_hooks_to_float64_precision(arch):
    """Where the tolerance above comes from. Weights and hooks compute the same function, so in float64 they
    agree to float64 rounding (~1e-15 here); in float32 they differ by float32 rounding only, which is bounded
    by the triangle inequality |g32 - h32| <= |g32 - g64| + |g64 - h64| + |h64 - h32|, each float32 term the
    size of float32's own error on the unedited model, |clean32 - clean64|, itself within the eps(float32) x
    logits x sqrt(layers) bound. (On SmolLM2, logits ~40 through 30 layers, that error is 1.1e-4:
    docs/represent.md.)"""
    r = _direction()
    tokens = random_tokens(2, 16)
    out = {}
    with torch.no_grad():
        for dt in (torch.float32, torch.float64):
            model = HookedModel(tiny_hf(arch).to(dt))
            clean = model(tokens).double()
            with ablate_direction(model, r):
                hooked = model(tokens).double()
            edited = HookedModel(orthogonalized_hf_model(model, r))(tokens).double()
            with ablate_direction(model, r, layers=range(model.cfg.n_layers - 1)):  # misses the last block
                partial = model(tokens).double()
            out[dt] = clean, hooked, edited, partial
    (c32, h32, g32, _), (c64, h64, g64, p64) = out[torch.float32], out[torch.float64]
    n = model.cfg.n_layers
    # float64 rounding at the logits' size through n layers
    assert (g64 - h64).abs().max() <= numerics.tol(torch.float64, numerics.magnitude(g64, h64), depth=n)
    assert (p64 - g64).abs().max() > 1e-3  # the float64 comparison does see an ablation that misses a writer
    fp32_error = (c32 - c64).abs().max()
    bound32 = numerics.tol(torch.float32, numerics.magnitude(c64, g64, h64), depth=n)  # fp32 at the logits' size
    assert 0 < fp32_error <= bound32
    assert (g32 - h32).abs().max() <= min(bound32, 4 * fp32_error)  # three such terms, and some slack


def test_ablation_bad_input():
    model = HookedModel(tiny_hf("llama"))
    with pytest.raises(ConfigError, match="d_model = 32"):
        with ablate_direction(model, torch.ones(7)):
            pass
    with pytest.raises(ConfigError, match="zero"):
        orthogonalize_weights(model, torch.zeros(32), "/nonexistent/never-written")
    gemma = HookedModel(tiny_hf("gemma2"))
    with pytest.raises(ConfigError, match="sandwich norms"):
        orthogonalize_weights(gemma, torch.ones(32), "/nonexistent/never-written")
