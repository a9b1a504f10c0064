"""The HF sampler: prefix KV-cache reuse must not change what is sampled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from thoughtlens.sample.base import SampleRequest, SamplingParams, rollout_seed
from thoughtlens.sample.hf import HFSampler

PREFIX = "Question: what is two plus three? Let me think step by step."


def test_greedy_rows_equal_plain_generate_exactly(tiny_lm):
    sampler = HFSampler(tiny_lm, batch_size=3)
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    got = sampler.sample([SampleRequest(PREFIX, (0, 1, 2))], params)
    ids = tiny_lm.to_tokens(PREFIX)
    ref = tiny_lm.hf_model.generate(
        ids,
        max_new_tokens=12,
        do_sample=False,
        attention_mask=torch.ones_like(ids),
        pad_token_id=tiny_lm.tokenizer.eos_token_id,
    )
    expected = tiny_lm.tokenizer.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)
    assert [c.text for c in got] == [expected] * 3
    assert all(c.finish_reason in ("length", "stop") and c.n_tokens > 0 for c in got)


def test_fixed_seed_is_reproducible_and_independent_of_batch_size(tiny_lm):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=8, seed=7)
    a = HFSampler(tiny_lm, batch_size=4).sample([SampleRequest(PREFIX, tuple(range(4)))], params)
    b = HFSampler(tiny_lm, batch_size=4).sample([SampleRequest(PREFIX, tuple(range(4)))], params)
    assert [c.text for c in a] == [c.text for c in b]
    assert len({c.text for c in a}) > 1  # sampling, not greedy
    other_seed = HFSampler(tiny_lm, batch_size=4).sample(
        [SampleRequest(PREFIX, (0, 1, 2, 3))], SamplingParams(temperature=1.0, max_new_tokens=8, seed=8)
    )
    assert [c.text for c in other_seed] != [c.text for c in a]


# Tokens the peaked model favours (" the", " a", " two", " five", " three", " so" in SmolLM2's vocabulary) and the
# bias its lm_head adds to each: together they carry ~99.7% of the mass at T=0.7, in unequal shares.
PEAKED_BIAS = {260: 11.0, 253: 10.7, 827: 10.35, 2531: 10.0, 1296: 9.7, 588: 9.4}


def _peaked_model(model_dir: str):
    """The tiny random Llama with an lm_head bias that makes a few first tokens dominate."""
    from thoughtlens import load

    model = load(model_dir, dtype=torch.float32)
    head = model.hf_model.lm_head
    bias = torch.zeros(head.out_features)
    for token, value in PEAKED_BIAS.items():
        bias[token] = value
    head.bias = torch.nn.Parameter(bias)
    return model


def _nucleus_probs(logits: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """softmax(logits / T), restricted to the smallest set of tokens whose mass reaches top_p, renormalised."""
    z = logits / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    before = np.cumsum(p[order]) - p[order]  # mass of the tokens ranked above each token
    keep = np.zeros_like(p, dtype=bool)
    keep[order[before <= top_p]] = True
    q = np.where(keep, p, 0.0)
    return q / q.sum()


def _chi2_pvalue(observed: dict[str, int], probs: np.ndarray, texts: list[str], n: int) -> float:
    """p-value of the observed first-token texts under `probs` (token ids grouped by their decoded text).
    A text that has probability 0 under `probs` but was drawn gives 0; categories expected < 5 times share a bin."""
    expected: dict[str, float] = {}
    for token in np.flatnonzero(probs):
        expected[texts[token]] = expected.get(texts[token], 0.0) + probs[token] * n
    if any(text not in expected for text in observed):
        return 0.0
    big = sorted(t for t, e in expected.items() if e >= 5)
    obs = [observed.get(t, 0) for t in big] + [n - sum(observed.get(t, 0) for t in big)]
    exp = [expected[t] for t in big] + [n - sum(expected[t] for t in big)]
    if exp[-1] < 1e-9:  # nothing outside the big categories: the rest bin must be empty too
        if obs[-1]:
            return 0.0
        obs, exp = obs[:-1], exp[:-1]
    return float(chisquare(obs, np.array(exp) * sum(obs) / sum(exp)).pvalue)


@pytest.mark.slow
def test_first_token_frequencies_match_the_models_distribution(tiny_lm_dir):
    """Sampled first tokens follow the top-p nucleus of softmax(logits / T) of a plain forward, and the same
    statistic rejects the counts a wrong temperature or a wrong top-p would produce."""
    model = _peaked_model(tiny_lm_dir)
    temperature, top_p, n = 0.7, 0.85, 2000
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=1, seed=3)
    comps = HFSampler(model, batch_size=500).sample([SampleRequest(PREFIX, tuple(range(n)))], params)
    assert len(comps) == n
    observed: dict[str, int] = {}
    for c in comps:
        observed[c.text] = observed.get(c.text, 0) + 1

    ids = model.to_tokens(PREFIX)
    with torch.no_grad():
        logits = model.hf_model(input_ids=ids).logits[0, -1].double().numpy()
    texts = model.tokenizer.batch_decode([[i] for i in range(logits.shape[0])], skip_special_tokens=True)

    want = _nucleus_probs(logits, temperature, top_p)
    # The setup can tell the hypotheses apart: a nucleus of a few tokens, each with a sizeable share.
    assert 3 <= np.count_nonzero(want) <= 5 and want.max() < 0.6
    assert _chi2_pvalue(observed, want, texts, n) > 1e-3

    wrong = {
        "temperature x1.5": _nucleus_probs(logits, temperature * 1.5, top_p),
        "no top-p": _nucleus_probs(logits, temperature, 1.0),
        "top_p 0.7": _nucleus_probs(logits, temperature, 0.7),
        "top-p before temperature": _nucleus_probs(logits, temperature, 1.0) * (_nucleus_probs(logits, 1.0, top_p) > 0),
    }
    for name, probs in wrong.items():
        probs = probs / probs.sum()
        assert np.abs(probs - want).sum() > 0.05, name
        assert _chi2_pvalue(observed, probs, texts, n) < 1e-6, f"counts not told apart from sampling with {name}"


def test_stop_strings_and_answer_predicate_end_rows_early(tiny_lm):
    params = SamplingParams(temperature=1.0, max_new_tokens=30, seed=1)
    sampler = HFSampler(tiny_lm, batch_size=4, answer_done=lambda text: len(text) >= 5)
    comps = sampler.sample([SampleRequest(PREFIX, (0, 1, 2, 3))], params)
    assert {c.finish_reason for c in comps} <= {"answer", "stop"}
    assert all(c.n_tokens < 30 for c in comps)


def test_rollout_seed_depends_on_prefix_index_and_seed_only():
    assert rollout_seed(0, "a", 1) == rollout_seed(0, "a", 1)
    assert (
        len({rollout_seed(0, "a", 1), rollout_seed(0, "a", 2), rollout_seed(1, "a", 1), rollout_seed(0, "b", 1)}) == 4
    )
