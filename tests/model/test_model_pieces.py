"""HookedModel's forward in pieces (embed, run_body, ln_final, unembed, run_cached) and its module / weight
accessors, against plain Hugging Face on tiny random models of every supported architecture."""

from __future__ import annotations

import copy

import numerics
import pytest
import torch
from tiny_models import ARCHS, random_tokens, tiny_hf
from transformers import AutoModelForCausalLM

from thoughtlens import HookedModel
from thoughtlens.errors import HookError
from thoughtlens.model.adapters import get_module
from thoughtlens.model.hooked_model import PlainCausalLM, as_causal_lm, hf_causal_lm
from thoughtlens.model.interventions import add_direction


@pytest.fixture(params=ARCHS)
def pair(request):
    hf = tiny_hf(request.param)
    plain = copy.deepcopy(hf)  # untouched SDPA (or eager) model
    return HookedModel(hf), plain


def _gemma2(cap: float | None = 30.0) -> tuple[HookedModel, torch.nn.Module]:
    hf = tiny_hf("gemma2")
    hf.config.final_logit_softcapping = cap
    return HookedModel(hf), copy.deepcopy(hf)


def test_unembed_of_the_final_normed_last_resid_post_equals_hf_logits(pair):
    model, plain = pair
    tokens = random_tokens()
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    _, cache = model.run_with_cache(tokens, names_filter=last)
    with torch.no_grad():
        got = model.unembed(model.ln_final(cache[last]))
        want = plain(tokens).logits
    assert got.shape == (*tokens.shape, model.cfg.d_vocab)
    numerics.assert_close(got, want, dtype=torch.float32, depth=2)


def test_run_body_equals_hf_base_model_and_feeds_unembed(pair):
    model, plain = pair
    tokens = random_tokens()
    with torch.no_grad():
        body = model.run_body(tokens)
        want = plain.base_model(input_ids=tokens, use_cache=False).last_hidden_state
        logits = model.unembed(body.last_hidden_state)
        plain_logits = plain(tokens).logits
    assert torch.equal(body.last_hidden_state, want)
    assert body.past_key_values is None  # use_cache=False by default
    numerics.assert_close(logits, plain_logits, dtype=torch.float32)


def test_embed_is_hook_embed_and_run_body_takes_it(pair):
    model, _ = pair
    tokens = random_tokens()
    _, cache = model.run_with_cache(tokens, names_filter="hook_embed")
    with torch.no_grad():
        embeds = model.embed(tokens)
        assert embeds.shape == (*tokens.shape, model.cfg.d_model)
        assert torch.equal(embeds, cache["hook_embed"])
        if not model.adapter.name.startswith("gemma"):  # Gemma's embedding module scales by sqrt(d_model)
            assert torch.equal(embeds, model.W_E[tokens])
        from_embeds = model.run_body(embeds=embeds).last_hidden_state
        from_tokens = model.run_body(tokens).last_hidden_state
    assert torch.equal(from_embeds, from_tokens)
    with pytest.raises(HookError, match="exactly one"):
        model.run_body(tokens, embeds=embeds)
    with pytest.raises(HookError, match="exactly one"):
        model.run_body()


def test_run_body_extends_a_kv_cache(pair):
    model, _ = pair
    tokens = random_tokens(pos=10)
    with torch.no_grad():
        full = model.run_body(tokens).last_hidden_state
        head = model.run_body(tokens[:, :6], use_cache=True)
        tail = model.run_body(tokens[:, 6:], past_key_values=head.past_key_values, use_cache=True)
    assert tail.past_key_values.get_seq_length() == 10
    numerics.assert_close(tail.last_hidden_state, full[:, 6:], dtype=torch.float32, depth=model.cfg.n_layers)


def test_run_cached_decodes_incrementally_as_a_full_forward(pair):
    model, plain = pair
    tokens = random_tokens(pos=9)
    with torch.no_grad():
        out = model.run_cached(tokens[:, :8])
        assert out.logits.shape == (2, 8, model.cfg.d_vocab)
        step = model.run_cached(tokens[:, 8:], past_key_values=out.past_key_values)
        full = plain(tokens).logits
    numerics.assert_close(out.logits, full[:, :8], dtype=torch.float32, depth=model.cfg.n_layers)
    numerics.assert_close(step.logits[:, -1], full[:, -1], dtype=torch.float32, depth=model.cfg.n_layers)


def test_a_plain_hf_model_gets_the_same_decoding_interface(pair):
    model, plain = pair
    lm = as_causal_lm(plain)
    assert isinstance(lm, PlainCausalLM) and as_causal_lm(model) is model
    assert hf_causal_lm(plain) is plain
    assert lm.device == model.device
    assert lm.generation_config is plain.generation_config
    tokens = random_tokens(pos=6)
    with torch.no_grad():
        assert torch.equal(lm(tokens), plain(tokens).logits)
        ours, theirs = model.run_cached(tokens), lm.run_cached(tokens)
    assert torch.equal(ours.logits, theirs.logits)


def test_blocks_and_submodules_follow_the_adapter(pair):
    model, _ = pair
    a, hf = model.adapter, hf_causal_lm(model)
    layers = get_module(hf, a.layers)
    assert [model.block(L) for L in range(model.cfg.n_layers)] == list(layers)
    assert model.submodule(a.o_proj, layer=1) is get_module(layers[1], a.o_proj)
    assert model.submodule(a.embed) is hf.get_input_embeddings()
    assert model.has_submodule(a.mlp_down, layer=0) and not model.has_submodule("no_such_module", layer=0)
    assert model.has_submodule(a.final_norm) and not model.has_submodule("model.no_such_norm")
    with pytest.raises(AttributeError):
        model.submodule("no_such_module")


def test_weights_are_views_of_hf_parameters_under_their_checkpoint_names(pair):
    model, plain = pair
    assert [n for n, _ in model.named_weights()] == [n for n, _ in plain.named_parameters()]
    for (_, ours), (_, theirs) in zip(model.named_weights(), plain.named_parameters()):
        assert torch.equal(ours, theirs)
    assert model.lm_head is hf_causal_lm(model).get_output_embeddings()
    assert model.W_U.shape == (model.cfg.d_model, model.cfg.d_vocab)
    assert model.b_U is None  # no supported family has an LM head bias


def test_b_U_is_the_lm_head_bias_and_unembed_adds_it():
    model, _ = _gemma2(cap=None)
    bias = torch.linspace(-1, 1, model.cfg.d_vocab)
    model.lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)
    h = torch.randn(3, model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    assert model.b_U is model.lm_head.bias
    with torch.no_grad():
        torch.testing.assert_close(model.unembed(h), h @ model.W_U + bias)


def test_gemma2_soft_caps_its_logits_once_in_unembed():
    model, plain = _gemma2(cap=1.0)  # a cap the tiny model's logits exceed, so capping shows
    tokens = random_tokens()
    assert model.final_logit_softcap == 1.0
    with torch.no_grad():
        hidden = model.run_body(tokens).last_hidden_state
        capped, raw = model.unembed(hidden), model.unembed(hidden, softcap=False)
        want = plain(tokens).logits
    assert torch.equal(raw, model.lm_head(hidden))
    assert raw.abs().max() > 1.0 and capped.abs().max() < 1.0
    assert torch.equal(capped, torch.tanh(raw / 1.0) * 1.0)
    numerics.assert_close(capped, want, dtype=torch.float32, depth=2)
    # the model's own forward caps the same way
    numerics.assert_close(model(tokens), want, dtype=torch.float32, depth=2)


def test_the_soft_cap_follows_the_config_and_dtype_casts_before_it():
    model, _ = _gemma2(cap=30.0)
    h = torch.randn(4, model.cfg.d_model, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    model.to(torch.bfloat16)
    with torch.no_grad():
        raw = model.lm_head(h)
        got = model.unembed(h, dtype=torch.float32)
        assert got.dtype == torch.float32 and model.unembed(h).dtype == torch.bfloat16
        assert torch.equal(got, torch.tanh(raw.float() / 30.0) * 30.0)
        hf_causal_lm(model).config.final_logit_softcapping = None
        assert model.final_logit_softcap is None
        assert torch.equal(model.unembed(h, dtype=torch.float32), raw.float())


def test_families_without_a_soft_cap_unembed_to_the_lm_head():
    model = HookedModel(tiny_hf("llama"))
    h = torch.randn(2, 5, model.cfg.d_model, generator=torch.Generator().manual_seed(2))
    assert model.final_logit_softcap is None
    with torch.no_grad():
        assert torch.equal(model.unembed(h), model.lm_head(h))


def test_copy_is_independent_and_drops_open_hooks():
    model = HookedModel(tiny_hf("llama"))
    tokens = random_tokens()
    with torch.no_grad():
        clean = model(tokens)
        with add_direction(model, "blocks.0.hook_resid_post", torch.ones(model.cfg.d_model), scale=5.0):
            steered = model(tokens)
            twin = model.copy()
            assert torch.equal(twin(tokens), clean)  # the open intervention stays with the original
        assert not torch.equal(steered, clean)
        twin.W_E.mul_(0.5)
        assert torch.equal(model(tokens), clean) and not torch.equal(twin(tokens), clean)
    assert isinstance(twin, HookedModel) and twin.name == model.name and twin.tokenizer is model.tokenizer
    _, cache = twin.run_with_cache(tokens, names_filter="blocks.0.attn.hook_pattern")  # its own attention controls
    assert cache["pattern", 0].shape[-1] == tokens.shape[1]


def test_copy_can_untie_the_embeddings():
    model = HookedModel(tiny_hf("gpt2"))  # GPT-2 ties lm_head to the token embedding
    assert model.lm_head.weight is model.W_E
    tied, untied = model.copy(), model.copy(untie_embeddings=True)
    assert tied.lm_head.weight is tied.W_E
    assert untied.lm_head.weight is not untied.W_E and torch.equal(untied.lm_head.weight, untied.W_E)
    assert hf_causal_lm(untied).config.tie_word_embeddings is False
    with torch.no_grad():
        untied.W_E.zero_()
    assert untied.lm_head.weight.abs().sum() > 0


def test_save_pretrained_writes_a_plain_hf_model_and_keeps_the_hooks(tmp_path):
    model = HookedModel(tiny_hf("llama"))
    tokens = random_tokens()
    out = model.save_pretrained(tmp_path / "saved")
    assert out == tmp_path / "saved" and (out / "config.json").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(tokens).logits, model(tokens))
    _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_pattern")  # still thoughtlens' attention
    assert cache["pattern", 1].shape == (2, model.cfg.n_heads, tokens.shape[1], tokens.shape[1])
