"""Parity and sanity on the real bundled model (SmolLM2-135M-Instruct, fp32)."""

from __future__ import annotations

import math

import numerics
import pytest
import torch

from thoughtlens import HookedModel, load

pytestmark = pytest.mark.slow

ENGLISH = (
    "The history of the city goes back more than two thousand years. It was founded as a small trading post on "
    "the river, and over the centuries it grew into one of the largest ports in the region. Today it is known for "
    "its museums, its old harbour and its lively markets, which attract visitors from all over the world."
)


@pytest.fixture(scope="module")
def models(smol_dir):
    from transformers import AutoModelForCausalLM

    model = load(smol_dir, dtype=torch.float32)
    plain = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    eager = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32, attn_implementation="eager").eval()
    return model, plain, eager


def _perplexity(model: HookedModel, tokens: torch.Tensor) -> float:
    logits = model(tokens)
    nll = torch.nn.functional.cross_entropy(logits[0, :-1].float(), tokens[0, 1:])
    return math.exp(nll.item())


def test_logits_equal_plain_hf_and_read_only_hooks_change_nothing(models):
    model, plain, _ = models
    tokens = model.to_tokens(ENGLISH)[:, :48]
    with torch.no_grad():
        expected = plain(tokens).logits
    assert torch.equal(model(tokens), expected)
    with model.hooks([(n, lambda t, hook: None) for n in model.hook_names if "pattern" not in n]):
        assert torch.equal(model(tokens), expected)


def test_resid_post_and_patterns_match_hf(models):
    model, plain, eager = models
    tokens = model.to_tokens(ENGLISH)[:, :32]
    _, cache = model.run_with_cache(tokens, names_filter="resid_post")
    _, patterns = model.run_with_cache(
        tokens, names_filter=[f"blocks.{L}.attn.hook_{x}" for L in (0, 7, 29) for x in ("pattern", "q", "k")]
    )
    with torch.no_grad():
        hidden = plain(tokens, output_hidden_states=True).hidden_states
        attn = eager(tokens, output_attentions=True).attentions
    for L in range(model.cfg.n_layers - 1):
        assert torch.equal(cache["resid_post", L], hidden[L + 1])
    for L in (0, 7, 29):
        # probabilities, at the scale of their scores' rounding (sums of |q k| / sqrt(d) reach ~40 here), after
        # L + 1 layers of float32 rounding
        scale = numerics.pattern_scale(patterns["q", L], patterns["k", L])
        numerics.assert_close(patterns["pattern", L], attn[L], dtype=torch.float32, depth=L + 1, scale=scale)


def test_zero_ablation_of_a_head_matches_a_hand_written_o_proj_hook(models):
    model, plain, _ = models
    tokens = model.to_tokens(ENGLISH)[:, :24]
    L, h, d = 5, 4, model.cfg.d_head

    def ablate(z, hook):
        z = z.clone()
        z[:, :, h] = 0
        return z

    ours = model.run_with_hooks(tokens, [(f"blocks.{L}.attn.hook_z", ablate)])
    handle = plain.model.layers[L].self_attn.o_proj.register_forward_pre_hook(
        lambda m, args: (
            torch.cat(
                [
                    args[0][..., : h * d],
                    torch.zeros_like(args[0][..., h * d : (h + 1) * d]),
                    args[0][..., (h + 1) * d :],
                ],
                -1,
            ),
        )
    )
    try:
        with torch.no_grad():
            expected = plain(tokens).logits
    finally:
        handle.remove()
    assert torch.equal(ours, expected)


def test_patching_resid_pre_changes_only_later_positions(models):
    model, _, _ = models
    tokens = model.to_tokens(ENGLISH)[:, :20]
    clean = model(tokens)

    def patch(r, hook):
        r = r.clone()
        r[:, 10] = 0
        return r

    patched = model.run_with_hooks(tokens, [("blocks.3.hook_resid_pre", patch)])
    assert torch.equal(patched[:, :10], clean[:, :10])
    assert not torch.allclose(patched[:, 10:], clean[:, 10:])


def test_perplexity_is_low_on_english_and_high_on_random_tokens(models):
    model, _, _ = models
    english = _perplexity(model, model.to_tokens(ENGLISH))
    g = torch.Generator().manual_seed(0)
    random = _perplexity(model, torch.randint(0, model.cfg.d_vocab, (1, 64), generator=g))
    assert english < 50, english
    assert random > 1000, random


def test_bf16_default_stays_close_to_fp32(models, smol_dir):
    model, _, _ = models
    bf16 = load(smol_dir, dtype=torch.bfloat16)
    tokens = model.to_tokens(ENGLISH)
    # a claim about the product, not a rounding bound: bf16 rounds every weight and activation, which costs this
    # model about 1% of perplexity (9.25 -> 9.36); a tenth is the most the default may cost
    assert abs(_perplexity(bf16, tokens) - _perplexity(model, tokens)) / _perplexity(model, tokens) < 0.1
