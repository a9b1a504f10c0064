"""VLLMSampler: a clear error without vLLM; request mapping checked against a stand-in `vllm` module, so these
tests run in the test environment itself (vLLM's CPU build lives in its own virtualenv, `make vllm-env`, whose
transformers pin does not fit this one). The real engine, served and in process, is exercised by
tests/sample/test_sample_vllm_engine.py."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from thoughtlens.errors import BackendError, ConfigError
from thoughtlens.sample.base import SampleRequest, SamplingParams, rollout_seed
from thoughtlens.sample.vllm import VLLMSampler


def test_missing_vllm_is_a_clear_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(
        BackendError, match=r"vLLM is not installed.*pip install 'thoughtlens\[vllm\]' on a GPU machine"
    ) as err:
        VLLMSampler("some/model")
    assert "\n" not in str(err.value)


@dataclass
class _Out:
    text: str
    token_ids: list
    finish_reason: str


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in with vLLM's offline API shape: LLM(model=..., **kw).generate(prompts, params_list)."""
    mod = types.ModuleType("vllm")
    calls: list[tuple[list[str], list[dict]]] = []

    class SamplingParams(dict):
        def __init__(self, **kw):
            super().__init__(kw)

    class LLM:
        def __init__(self, model, **kw):
            self.model, self.kw = model, kw

        def generate(self, prompts, params, use_tqdm=True):
            calls.append((list(prompts), list(params)))
            # Echo the seed so the test can check each output went back to its own rollout.
            return [
                types.SimpleNamespace(
                    outputs=[_Out(f"{p}|{sp['seed']}", [0] * 3, "length" if sp["seed"] % 2 else "stop")]
                )
                for p, sp in zip(prompts, params)
            ]

    mod.LLM, mod.SamplingParams, mod.calls = LLM, SamplingParams, calls
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def test_requests_map_to_engine_calls_in_chunks(fake_vllm):
    sampler = VLLMSampler("m", chunk_size=3, dtype="bfloat16")
    assert sampler.llm.kw == {"dtype": "bfloat16", "enable_prefix_caching": True}
    params = SamplingParams(temperature=0.5, top_p=0.8, max_new_tokens=9, stop=("\n\n",), seed=11)
    seen = []
    out = sampler.sample(
        [SampleRequest("A", (0, 1, 2, 3)), SampleRequest("B", (5,))], params, on_completion=seen.append
    )

    assert [len(prompts) for prompts, _ in fake_vllm.calls] == [3, 2]
    assert seen == out
    assert [(c.prefix_index, c.sample_index) for c in out] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 5)]
    for c in out:
        prefix = "AB"[c.prefix_index]
        seed = rollout_seed(11, prefix, c.sample_index)
        assert c.text == f"{prefix}|{seed}" and c.n_tokens == 3
        assert c.finish_reason == ("length" if seed % 2 else "stop")
    sp = fake_vllm.calls[0][1][0]
    assert (sp["n"], sp["temperature"], sp["top_p"], sp["max_tokens"], sp["stop"]) == (1, 0.5, 0.8, 9, ["\n\n"])


def test_bad_arguments(fake_vllm):
    with pytest.raises(BackendError, match="chunk_size must be >= 1"):
        VLLMSampler("m", chunk_size=0)
    with pytest.raises(ConfigError, match="max_new_tokens must be >= 1"):  # refused when the params are built
        VLLMSampler("m").sample([SampleRequest("A", (0,))], SamplingParams(max_new_tokens=0))
