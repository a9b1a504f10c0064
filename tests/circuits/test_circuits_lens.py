"""Logit lens, decompose_resid and DLA against independent computations on tiny random models."""

from __future__ import annotations

import numerics
import pytest
import torch
from tiny_models import random_tokens, tiny_hf

from thoughtlens import HookedModel
from thoughtlens.circuits import decompose_resid, dla, logit_lens, neuron_dla
from thoughtlens.errors import ThoughtlensError

ARCHS = ["llama", "gpt2", "gpt_neox", "qwen3"]


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return HookedModel(tiny_hf(request.param))


def test_decomposition_sums_to_residual_stream(model):
    tokens = random_tokens()
    n = model.cfg.n_layers
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_pre", f"blocks.{n - 1}.hook_resid_post"])
    comps, labels = decompose_resid(model, tokens)
    assert comps.shape == (len(labels), *tokens.shape, model.cfg.d_model)
    assert sum(lab.startswith("L0H") for lab in labels) == model.cfg.n_heads
    # a sum of components: rounding at the sum of their |values|, through the n layers that wrote them
    numerics.assert_close(
        comps.sum(0),
        cache[f"blocks.{n - 1}.hook_resid_post"],
        dtype=torch.float32,
        depth=n,
        scale=float(comps.abs().sum(0).max()),
    )
    mid, _ = decompose_resid(model, tokens, layer=1, by_head=False)
    numerics.assert_close(
        mid.sum(0), cache["blocks.1.hook_resid_pre"], dtype=torch.float32, depth=1, scale=float(mid.abs().sum(0).max())
    )


def test_one_head_component_equals_the_change_from_zero_ablating_it(model):
    tokens, L, h = random_tokens(), 1, 2
    comps, labels = decompose_resid(model, tokens, layer=L + 1)

    def zero_head(z, hook):
        z = z.clone()
        z[:, :, h] = 0
        return z

    _, full = model.run_with_cache(tokens, names_filter=f"blocks.{L}.hook_attn_out")
    with model.hooks([(f"blocks.{L}.attn.hook_z", zero_head)]):
        _, ablated = model.run_with_cache(tokens, names_filter=f"blocks.{L}.hook_attn_out")
    expected = full[f"blocks.{L}.hook_attn_out"] - ablated[f"blocks.{L}.hook_attn_out"]
    # a difference of two attention outputs: rounding at their size, after L + 1 layers
    scale = numerics.magnitude(full[f"blocks.{L}.hook_attn_out"], ablated[f"blocks.{L}.hook_attn_out"])
    numerics.assert_close(comps[labels.index(f"L{L}H{h}")], expected, dtype=torch.float32, depth=L + 1, scale=scale)


def test_dla_sums_to_the_logit_difference(model):
    tokens = random_tokens()
    df = dla(model, tokens, correct=[3, 5], wrong=7)
    with torch.no_grad():
        logits = model(tokens)[:, -1]
    expected = ((logits[0, 3] - logits[0, 7]) + (logits[1, 5] - logits[1, 7])) / 2
    n = model.cfg.n_layers
    # logit differences (each term at most twice the largest logit) through n layers; the attributions' sum
    # rounds at the sum of their |values|
    scale = 2 * numerics.magnitude(logits)
    numerics.assert_close(
        df["value"].sum(), expected, dtype=torch.float32, depth=n, scale=max(scale, float(df["value"].abs().sum()))
    )
    numerics.assert_close(df.attrs["logit"], expected, dtype=torch.float32, depth=n, scale=scale)
    assert set(df.query("head >= 0")["layer"]) == set(range(model.cfg.n_layers))


def test_neurons_sum_to_their_mlp_row(model):
    tokens = random_tokens()
    layer_rows = dla(model, tokens, correct=3, wrong=7).set_index("component")["value"]
    neurons = neuron_dla(model, tokens, correct=3, wrong=7, layers=[1])
    down = model.hf_model.get_submodule(
        {
            "llama": "model.layers.1.mlp.down_proj",
            "qwen3": "model.layers.1.mlp.down_proj",
            "gpt2": "transformer.h.1.mlp.c_proj",
            "gpt_neox": "gpt_neox.layers.1.mlp.dense_4h_to_h",
        }[model.adapter.name]
    )
    # d_mlp neurons plus the bias row (neuron -1; 0 for bias-free families) sum to the layer's MLP row
    # (before: the bias row was promised but missing, so families with a bias were skipped here).
    assert len(neurons) == model.cfg.d_mlp + 1 and neurons["neuron"].iloc[-1] == -1
    # a sum of per-neuron attributions: rounding at the sum of their |values|, through 2 layers
    numerics.assert_close(
        neurons["value"].sum(),
        layer_rows["L1.mlp"],
        dtype=torch.float32,
        depth=2,
        scale=float(neurons["value"].abs().sum()),
    )
    if getattr(down, "bias", None) is None:
        assert neurons["value"].iloc[-1] == 0.0


def test_logit_lens_last_row_is_the_logits_and_rows_match_hidden_states(model):
    tokens = random_tokens()
    lens = logit_lens(model, tokens, pos=None)
    assert lens.shape == (model.cfg.n_layers + 1, *tokens.shape, model.cfg.d_vocab)
    with torch.no_grad():
        out = model.hf_model(tokens, output_hidden_states=True)
        norm = model.hf_model.get_submodule(model.adapter.final_norm)
        expected_0 = model.hf_model.get_output_embeddings()(norm(out.hidden_states[0]))
    # logits through every layer; the embeddings' row through the final norm and the unembedding (2 stages)
    numerics.assert_close(lens[-1], out.logits, dtype=torch.float32, depth=model.cfg.n_layers)
    numerics.assert_close(lens[0], expected_0, dtype=torch.float32, depth=2)


def test_model_without_final_norm_attributes_the_raw_stream():
    hf = tiny_hf("llama")
    hf.model.norm = torch.nn.Identity()
    model = HookedModel(hf)
    tokens = random_tokens()
    df = dla(model, tokens, correct=3, wrong=7)
    comps, _ = decompose_resid(model, tokens, pos=-1)
    W_U = hf.lm_head.weight
    expected = (comps.sum(0)[:, 0] @ (W_U[3] - W_U[7])).mean()
    # products with an unembedding difference: rounding at the sum of their |terms|, through the model's layers
    scale = float((comps.abs().sum(0)[:, 0] @ (W_U[3] - W_U[7]).abs()).max())
    n = model.cfg.n_layers
    numerics.assert_close(
        df["value"].sum(), expected, dtype=torch.float32, depth=n, scale=max(scale, float(df["value"].abs().sum()))
    )
    numerics.assert_close(df.attrs["logit"], expected, dtype=torch.float32, depth=n, scale=scale)
    assert logit_lens(model, tokens).shape[0] == model.cfg.n_layers + 1


def test_unknown_final_norm_is_a_clear_error():
    hf = tiny_hf("llama")
    hf.model.norm = torch.nn.Tanh()
    with pytest.raises(ThoughtlensError, match="Identity"):
        dla(HookedModel(hf), random_tokens(), correct=3, wrong=7)


def test_sandwich_norm_models_cannot_split_by_head_but_can_by_layer():
    model = HookedModel(tiny_hf("gemma2"))
    with pytest.raises(ThoughtlensError, match="by_head=False"):
        decompose_resid(model, random_tokens())
    comps, labels = decompose_resid(model, random_tokens(), by_head=False)
    assert labels[:3] == ["embed", "L0.attn", "L0.mlp"]
    with pytest.raises(ThoughtlensError, match="final_logit_softcapping"):
        dla(model, random_tokens(), correct=3, wrong=7, by_head=False)


@pytest.mark.parametrize("correct, match", [([1, 2, 3], "one per prompt"), (500, "outside the vocabulary")])
def test_bad_token_ids_are_clear_errors(correct, match):
    model = HookedModel(tiny_hf("llama"))
    with pytest.raises(ThoughtlensError, match=match):
        dla(model, random_tokens(), correct=correct, wrong=7)


def test_bad_layer_is_a_clear_error():
    model = HookedModel(tiny_hf("llama"))
    with pytest.raises(ThoughtlensError, match="out of range"):
        decompose_resid(model, random_tokens(), layer=9)
