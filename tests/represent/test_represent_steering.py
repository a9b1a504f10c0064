"""Steering effect over sampled rollouts on a tiny random model with a word tokenizer."""

from __future__ import annotations

import numerics
import numpy as np
import pytest
import torch
from tiny_models import tiny_hf
from transformers import PreTrainedTokenizerFast

from thoughtlens import HookedModel
from thoughtlens.errors import ConfigError, HookError
from thoughtlens.represent.steering import continuation_nll, steering_effect
from thoughtlens.sample.base import SampleRequest, SamplingParams
from thoughtlens.sample.hf import HFSampler

pytestmark = pytest.mark.slow  # samples rollouts

TARGET = "w5"


def _model() -> HookedModel:
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["</s>"] + [f"w{i}" for i in range(1, 97)]  # one word per id of the tiny model's vocabulary
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="</s>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="</s>", eos_token="</s>", pad_token="</s>")
    hf = tiny_hf("llama")
    hf.generation_config.eos_token_id = 0
    return HookedModel(hf, tokenizer=fast)


def test_adding_a_token_direction_raises_that_tokens_rate_with_a_ci_and_a_fluency_cost():
    model = _model()
    prompts = ["w1 w2 w3", "w7 w8"]
    tid = model.tokenizer.convert_tokens_to_ids(TARGET)
    direction = model.W_U[:, tid] / model.W_U[:, tid].norm()  # pushes the target's logit up
    outcome = lambda text: float(TARGET in text.split())  # noqa: E731
    res = steering_effect(
        model,
        prompts,
        direction,
        hook="blocks.2.hook_resid_post",
        scales=[30.0],
        outcome=outcome,
        n_rollouts=8,
        max_new_tokens=6,
        temperature=1.0,
        batch_size=4,
    )
    zero, steered = res.rows
    assert (zero.scale, steered.scale) == (0.0, 30.0)
    # the unsteered rate is what the plain sampler gives with the same seeds
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=6, seed=0)
    plain = [
        c.text
        for p in prompts
        for c in HFSampler(model, batch_size=4).sample([SampleRequest(p, tuple(range(8)))], params)
    ]
    assert zero.rate == pytest.approx(np.mean([outcome(t) for t in plain]))
    assert zero.effect == 0.0 and steered.effect > 0.5 and steered.ci[0] > 0
    assert steered.perplexity_ratio > 1.0  # steered text is less likely under the unsteered model
    assert steered.n_rollouts == 16


def test_continuation_nll_by_hand():
    model = _model()
    nll, n = continuation_nll(model, "w1 w2", ["w3 w4"])
    ids = torch.tensor([[1, 2, 3, 4]])
    logits = model(ids)[0].float()
    logp = torch.log_softmax(logits, -1)
    want = -(logp[1, 3] + logp[2, 4]).item()
    # two log-probabilities, each rounded at the logits' size, through the model's 3 layers
    assert n == 2
    numerics.assert_close(nll, want, dtype=model.dtype, depth=3, scale=2 * numerics.magnitude(logits))


def test_steering_bad_input():
    model = _model()
    with pytest.raises(HookError, match="width 32"):
        steering_effect(
            model,
            ["w1"],
            torch.ones(5),
            hook="blocks.0.hook_resid_post",
            scales=[1],
            outcome=len,
            n_rollouts=2,
            max_new_tokens=1,
        )
    with pytest.raises(HookError, match="unknown hook name"):
        steering_effect(
            model,
            ["w1"],
            torch.ones(32),
            hook="blocks.9.hook_resid_post",
            scales=[1],
            outcome=len,
            n_rollouts=2,
            max_new_tokens=1,
        )
    with pytest.raises(ConfigError, match="n_rollouts"):
        steering_effect(
            model, ["w1"], torch.ones(32), hook="blocks.0.hook_resid_post", scales=[1], outcome=len, n_rollouts=1
        )


def test_a_baseline_is_reused_for_another_direction():
    model = _model()
    prompts = ["w1 w2 w3", "w7 w8"]
    kw = dict(
        hook="blocks.2.hook_resid_post",
        scales=[10.0],
        outcome=lambda t: float(TARGET in t.split()),
        n_rollouts=4,
        max_new_tokens=4,
        temperature=1.0,
        batch_size=4,
    )
    first = steering_effect(model, prompts, torch.ones(32), **kw)
    second = steering_effect(model, prompts, -torch.ones(32), baseline=first, **kw)
    assert second.texts[0.0] is first.texts[0.0] and second.rows[0].rate == first.rows[0].rate
    assert second.texts[10.0] != first.texts[10.0]  # the steered rollouts are new
    with pytest.raises(ConfigError, match="baseline"):
        steering_effect(model, prompts[:1], torch.ones(32), baseline=first, **kw)
