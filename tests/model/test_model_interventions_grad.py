"""stop_gradient and edit_pattern on tiny random models: values, gradients, and clean exits."""

from __future__ import annotations

import numerics
import pytest
import torch
from tiny_models import random_tokens, tiny_hf

from thoughtlens import HookedModel
from thoughtlens.errors import HookError
from thoughtlens.model.interventions import attention_controls, block_keys, edit_pattern, stop_gradient


@pytest.fixture(params=["llama", "gpt2"])
def model(request):
    return HookedModel(tiny_hf(request.param))


def _grad_of_last_logit_wrt_embeds(model, tokens):
    embeds = model.embed(tokens).detach().requires_grad_(True)
    hidden = model.run_body(embeds=embeds).last_hidden_state
    logit = model.unembed(hidden[:, -1]).sum()
    (grad,) = torch.autograd.grad(logit, embeds)
    return logit.detach(), grad


def test_stop_gradient_keeps_values_and_cuts_the_keys_and_values_path(model):
    tokens = random_tokens(batch=1, pos=8)
    logit, grad = _grad_of_last_logit_wrt_embeds(model, tokens)
    with stop_gradient(model, "blocks.*.attn.hook_k"), stop_gradient(model, "blocks.*.attn.hook_v"):
        cut_logit, cut_grad = _grad_of_last_logit_wrt_embeds(model, tokens)
    assert torch.equal(cut_logit, logit)
    # the last position reads earlier ones only through their keys and values
    assert grad[0, :-1].abs().sum() > 0 and cut_grad[0, :-1].abs().sum() == 0
    assert cut_grad[0, -1].abs().sum() > 0
    assert torch.equal(_grad_of_last_logit_wrt_embeds(model, tokens)[1], grad)  # removed on exit


def test_edit_pattern_returning_none_reads_without_changing_the_output(model):
    tokens = random_tokens()
    seen = []
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.*.attn.hook_pattern")  # eager patterns
        clean = model(tokens)
        with edit_pattern(model, lambda p: seen.append(p.shape), layers=[0, 2]):
            logits = model(tokens)
    assert seen == [(2, model.cfg.n_heads, tokens.shape[1], tokens.shape[1])] * 2
    numerics.assert_close(logits, clean, dtype=torch.float32, depth=model.cfg.n_layers)
    assert all(ctl.idle for ctl in attention_controls(model))


def test_edit_pattern_renormalising_without_a_key_equals_block_keys(model):
    tokens = random_tokens()

    def hide_key_3(p):
        p = p.clone()
        p[..., 3] = 0
        return p / p.sum(-1, keepdim=True)

    with torch.no_grad():
        with edit_pattern(model, hide_key_3):
            edited = model(tokens)
        with block_keys(model, keys=[3]):
            blocked = model(tokens)
        clean = model(tokens)
    # rows 0..2 cannot see key 3: renormalising leaves them, and hiding key 3 for rows >= 3 changes the logits
    numerics.assert_close(
        edited, blocked, dtype=torch.float32, depth=model.cfg.n_layers, scale=float(clean.abs().max())
    )
    assert (edited[:, 3:] - clean[:, 3:]).abs().max() > 1e-3


def test_edit_pattern_checks_what_it_is_given(model):
    tokens = random_tokens()
    with pytest.raises(HookError, match="same shape"), edit_pattern(model, lambda p: p[..., :-1]):
        model(tokens)
    with pytest.raises(HookError, match="layers"), edit_pattern(model, lambda p: None, layers=[99]):
        pass
    assert all(ctl.idle for ctl in attention_controls(model))
