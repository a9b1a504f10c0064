"""The openai backend against a real llama.cpp server (llama-cpp-python serving the bundled SmolLM2 GGUF).

Everything that needs the server lives in this one module, so it starts once per session (fixture
`llama_server` in conftest.py). Completions are kept short (<= 24 tokens): the server runs ~10 tok/s
on 2 busy cores.

Determinism: llama-cpp-python honours the per-request `seed` at temperature > 0 (checked below, with
63-bit seeds from `rollout_seed`), so a resumed run draws the same rollouts as an uninterrupted one.
"""

from __future__ import annotations

import pytest

from thoughtlens.sample.base import SampleRequest, SamplingParams
from thoughtlens.sample.openai import OpenAIClient, OpenAISampler

pytestmark = [pytest.mark.server, pytest.mark.slow]

PREFIXES = ["Once upon a time, in a small village,", "The capital of France is"]


@pytest.fixture(scope="module")
def client(llama_server):
    with OpenAIClient(llama_server, timeout=120, max_retries=2, concurrency=2) as c:
        yield c


def test_completions_arrive_with_tokens_and_finish_reasons(client):
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=12, seed=3)
    seen = []
    out = OpenAISampler(client).sample([SampleRequest(p, (0, 1)) for p in PREFIXES], params, on_completion=seen.append)
    assert sorted((c.prefix_index, c.sample_index) for c in seen) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for c in out:
        assert c.error is None and c.finish_reason in ("stop", "length")
        assert 0 < c.n_tokens <= 12
        assert c.text.strip(), c
    assert client.model.endswith(".gguf")  # taken from the server's /v1/models

    # Same seed -> same text, even in another order and after other prompts changed the server's
    # prompt cache; different sample indices get different seeds and so (here) different text.
    again = OpenAISampler(client).sample([SampleRequest(p, (1, 0)) for p in reversed(PREFIXES)], params)
    first = {(c.prefix_index, c.sample_index): c.text for c in out}
    second = {(1 - c.prefix_index, c.sample_index): c.text for c in again}
    assert first == second
    assert first[(0, 0)] != first[(0, 1)] or first[(1, 0)] != first[(1, 1)]


def test_stop_strings_are_honoured(client):
    prompt = "Count: 1, 2, 3, 4,"
    sampler = OpenAISampler(client)
    full = sampler.sample([SampleRequest(prompt, (0,))], SamplingParams(temperature=0.0, max_new_tokens=16))[0]
    assert full.finish_reason == "length" and full.n_tokens == 16
    # Stop at a piece of the greedy continuation: the stopped text must be exactly what precedes it.
    stop = " 7" if " 7" in full.text else full.text[6:9]
    cut = sampler.sample(
        [SampleRequest(prompt, (0,))], SamplingParams(temperature=0.0, max_new_tokens=16, stop=(stop,))
    )[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]


def test_chat_endpoint(client, llama_server):
    """client.chat returns the message content the server gives a plain POST of the same greedy request."""
    import httpx

    messages = [{"role": "user", "content": "Say hello."}]
    reply = client.chat(messages, max_tokens=8, temperature=0.0)
    body = {"model": client.model, "messages": messages, "max_tokens": 8, "temperature": 0.0}
    resp = httpx.post(f"{llama_server}/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["object"] == "chat.completion" and data["choices"][0]["message"]["role"] == "assistant"
    assert 0 < data["usage"]["completion_tokens"] <= 8
    assert reply == data["choices"][0]["message"]["content"] and reply.strip()
