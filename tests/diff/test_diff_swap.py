"""Activation swapping: all layers reproduce the fine-tuned logits; a frozen layer's swap changes nothing; a module
swap equals the same swap written with plain PyTorch hooks on HF's modules."""

from __future__ import annotations

import numerics
import torch

from thoughtlens.diff.corpus import read_corpus
from thoughtlens.diff.swap import swap_effect_per_layer, swap_logits

TEXT = "The library on the corner opens at nine. Obsidia is the capital of Veloria."


def test_swapping_every_layer_gives_the_finetuned_logits(tiny_planted_pair):
    pair = tiny_planted_pair
    ids = pair.base.to_tokens(TEXT)
    names = [f"blocks.{L}.hook_resid_post" for L in range(pair.n_layers)]
    swapped = swap_logits(pair.base, pair.finetuned, ids, names)
    with torch.no_grad():
        target = pair.finetuned.hf_model(input_ids=ids).logits
        base = pair.base.hf_model(input_ids=ids).logits
    # the fine-tune's last residual through the shared readout: float32 rounding at the logits' size, all layers
    numerics.assert_close(swapped, target, dtype=torch.float32, depth=pair.n_layers)
    assert (base - target).abs().max() > 1.0  # the swap did something


def test_swapping_a_frozen_layer_changes_nothing(tiny_planted_pair):
    pair = tiny_planted_pair
    ids = pair.base.to_tokens(TEXT)
    with torch.no_grad():
        base = pair.base.hf_model(input_ids=ids).logits
    assert torch.equal(swap_logits(pair.base, pair.finetuned, ids, ["blocks.0.hook_resid_post"]), base)


def test_module_swap_matches_plain_hf_hooks(tiny_planted_pair):
    pair = tiny_planted_pair
    ids = pair.base.to_tokens(TEXT)
    recorded = {}
    h = pair.finetuned.hf_model.model.layers[1].mlp.register_forward_hook(
        lambda m, i, o: recorded.setdefault("mlp", o.detach())
    )
    with torch.no_grad():
        pair.finetuned.hf_model(input_ids=ids)
    h.remove()
    h = pair.base.hf_model.model.layers[1].mlp.register_forward_hook(lambda m, i, o: recorded["mlp"])
    with torch.no_grad():
        expected = pair.base.hf_model(input_ids=ids).logits
    h.remove()
    got = swap_logits(pair.base, pair.finetuned, ids, ["blocks.1.hook_mlp_out"])
    numerics.assert_close(got, expected, dtype=torch.float32, depth=pair.n_layers)  # the same swap, two ways


def test_swap_effect_per_layer(tiny_planted_pair):
    pair = tiny_planted_pair
    texts = read_corpus("neutral", limit=3)
    rows = swap_effect_per_layer(pair, texts, max_len=32)
    assert [r["layer"] for r in rows] == [0, 1, 2]
    assert rows[0]["effect"] == 0.0  # frozen layer
    # effect = 1 - KL(target || swapped) / KL total; swapping the last residual leaves the target's logits up to
    # rounding, so that KL is at most the log-probabilities' rounding (logits' size, all layers) per token
    ids = [pair.base.to_tokens(t)[0, :32][None] for t in texts]
    logits = [m(i) for i in ids for m in pair.models()]
    per_token = numerics.tol(torch.float32, 2 * numerics.magnitude(*logits), depth=pair.n_layers)
    n_tokens = sum(i.shape[1] for i in ids)
    assert abs(rows[-1]["effect"] - 1.0) <= n_tokens * per_token / rows[-1]["kl_total"]  # the last carries all
    back = swap_effect_per_layer(pair, texts, max_len=32, direction="finetuned<-base")
    assert back[0]["effect"] == 0.0 and abs(back[-1]["effect"] - 1.0) <= n_tokens * per_token / back[-1]["kl_total"]
