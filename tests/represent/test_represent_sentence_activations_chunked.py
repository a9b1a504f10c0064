"""Chunked prefill of sentence activations vs one pass vs plain HF `output_hidden_states`.

The reference is HF's own forward over the whole sequence (no thoughtlens hooks, no cache), reduced per
sentence by hand in the test; sentences are chosen to straddle the chunk boundaries.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thoughtlens import HookedModel
from thoughtlens.errors import ConfigError
from thoughtlens.represent.sentence_activations import sentence_activations

from tiny_models import random_tokens, tiny_hf

RANGES = [(1, 6), (6, 6), (7, 15), (15, 22), (22, 29)]  # with chunk 4 / 7: most sentences straddle a boundary


def _reference(hf_model, tokens: torch.Tensor, ranges) -> tuple[np.ndarray, np.ndarray]:
    """Per-sentence mean and last token of every layer's output, from HF's hidden states (one plain forward).

    hidden_states[L + 1] is layer L's output for every layer but the last, where some HF models store the
    final-normed state instead; the last layer's output is taken with a plain torch forward hook instead.
    """
    layers = hf_model.base_model.layers if hasattr(hf_model.base_model, "layers") else hf_model.base_model.h
    got = {}
    handle = layers[-1].register_forward_hook(lambda m, a, out: got.update(last=out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        out = hf_model(input_ids=tokens, output_hidden_states=True, use_cache=False)
    handle.remove()
    per_layer = [h[0] for h in out.hidden_states[1:-1]] + [got["last"][0]]  # n_layers x [T, d]
    means = np.stack([[h[a:b].mean(0).numpy() if b > a else np.full(h.shape[-1], np.nan) for a, b in ranges]
                      for h in per_layer])
    lasts = np.stack([[h[b - 1].numpy() if b > a else np.full(h.shape[-1], np.nan) for a, b in ranges]
                      for h in per_layer])
    return means, lasts  # [n_layers, S, d]


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_chunked_equals_one_pass_and_plain_hf(arch):
    model = HookedModel(tiny_hf(arch))
    tokens = random_tokens(1, 30)
    means, lasts = _reference(model.hf_model, tokens, RANGES)
    one = sentence_activations(model, tokens, RANGES, hooks="resid_post", chunk_tokens=None)
    for chunk in (1, 4, 7, 64):
        acts = sentence_activations(model, tokens, RANGES, hooks="resid_post", chunk_tokens=chunk)
        for r, ref in (("mean", means), ("last", lasts)):
            np.testing.assert_allclose(acts.values[r], ref, atol=2e-5, rtol=1e-4, err_msg=f"{arch} {r} chunk {chunk}")
            np.testing.assert_allclose(acts.values[r], one.values[r], atol=2e-5, rtol=1e-4)


def test_hooks_before_any_attention_chunk_without_a_cache():
    # blocks.0.hook_resid_pre stops the forward before layer 0 attends: no cache is filled, positions still count
    model = HookedModel(tiny_hf("llama"))
    tokens = random_tokens(1, 30)
    with torch.no_grad():
        embed = model.hf_model.get_input_embeddings()(tokens)[0]  # [T, d]: resid_pre of layer 0 in llama
    acts = sentence_activations(model, tokens, RANGES, hooks="blocks.0.hook_resid_pre", chunk_tokens=4)
    want = np.stack([embed[a:b].mean(0).numpy() if b > a else np.full(embed.shape[-1], np.nan) for a, b in RANGES])
    np.testing.assert_allclose(acts.values["mean"][0], want, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "1024"])
def test_a_bad_chunk_size_gets_a_one_line_error(bad):
    model = HookedModel(tiny_hf("llama"))
    with pytest.raises(ConfigError, match="chunk_tokens must be a positive number of tokens or None"):
        sentence_activations(model, random_tokens(1, 30), RANGES, chunk_tokens=bad)


@pytest.mark.slow
def test_bundled_model_chunked_equals_plain_hf():
    import thoughtlens
    from thoughtlens.represent.sentence_activations import token_ranges

    model = thoughtlens.load()
    text = ("Let me compute 17 times 23. First, 17 times 20 is 340. Then 17 times 3 is 51. "
            "Wait, let me double-check that: 340 plus 51 is 391. So the answer is 391, I think. "
            "Hmm, maybe I should verify with another method: 23 times 17 is 23 times 10 plus 23 times 7.")
    cuts = [0] + [i + 2 for i, c in enumerate(text) if c == "." and i + 2 < len(text)] + [len(text) + 1]
    spans = [(a, b - 1) for a, b in zip(cuts[:-1], cuts[1:])]
    tokens, ranges = token_ranges(model, text, spans)
    means, lasts = _reference(model.hf_model, tokens, ranges)
    for chunk in (None, 13, 32):
        acts = sentence_activations(model, tokens, ranges, hooks="resid_post", chunk_tokens=chunk)
        # SmolLM2's residual stream reaches norms of a few hundred in late layers: relative tolerance
        np.testing.assert_allclose(acts.values["mean"], means, atol=1e-3, rtol=1e-4, err_msg=f"chunk {chunk}")
        np.testing.assert_allclose(acts.values["last"], lasts, atol=1e-3, rtol=1e-4, err_msg=f"chunk {chunk}")
