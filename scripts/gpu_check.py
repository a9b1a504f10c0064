"""Exercise thoughtlens's GPU paths with small budgets; run by scripts/gpu_check.sh (see there).

Each check prints one line `ok|FAIL|skip <check>: <figures>`; the exit status is the number of FAILs.
    1. hf backend on CUDA in bf16 (`load(..., device="cuda", dtype="bf16")`): N=32 x 64 tokens, tok/s,
       and the first-position logits against the same model in fp32 on CPU.
    2. `device_map="auto"` (accelerate places the layers) loads and runs.
    3. a receiver-heads pass (`analyze_attention`) on CUDA, compared with the same pass in fp32 on CPU.
    4. the in-process vllm backend (`make_sampler("vllm", ...)`), where vLLM is installed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

FAILS = 0
DEVICE = "cuda"  # --device cpu: a dry run of the same checks on this CPU (for checking the script itself)


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def report(status: str, check: str, text: str) -> None:
    global FAILS
    FAILS += status == "FAIL"
    print(f"{status} {check}: {text}", flush=True)


def tiny_model_dir(tokenizer_dir: str, out: str) -> str:
    """A random Llama (4 layers, d_model 256) with a real tokenizer: the GPU paths without a model download."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def check(name):
    def wrap(fn):
        def run(*a, **kw):
            try:
                return fn(*a, **kw)
            except Exception as exc:  # a check that breaks is reported, and the others still run
                report("FAIL", name, f"{type(exc).__name__}: {exc}")
                traceback.print_exc(limit=4)

        return run

    return wrap


@check("hf-cuda-bf16")
def hf_backend(model_dir: str) -> None:
    import torch

    from thoughtlens import load
    from thoughtlens.sample.base import SamplingParams, requests_for
    from thoughtlens.sample.registry import make_sampler

    lm = load(model_dir, device=DEVICE, dtype="bf16")
    p = next(lm.hf_model.parameters())
    assert p.device.type == DEVICE and p.dtype == torch.bfloat16, (p.device, p.dtype)
    prompt = lm.apply_chat_template("What is 12 + 30? Think step by step.")
    sampler = make_sampler("hf", model=lm, batch_size=32)
    params = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=64, seed=0)
    sampler.sample(requests_for([prompt], 4), SamplingParams(max_new_tokens=4))  # warm-up
    sync()
    t0 = time.perf_counter()
    out = sampler.sample(requests_for([prompt], 32), params)
    sync()
    dt = time.perf_counter() - t0
    tokens = sum(c.n_tokens for c in out)
    # First-position logits: bf16 on CUDA vs fp32 on CPU (same weights).
    ref = load(model_dir, device="cpu", dtype="float32")
    ids = ref.to_tokens(prompt)
    with torch.no_grad():
        a = lm.hf_model(ids.to(DEVICE)).logits[0, -1].float().cpu()
        b = ref.hf_model(ids).logits[0, -1]
    top_agree = int(a.argmax() == b.argmax())
    err = float((a - b).abs().max() / b.abs().max())
    report(
        "ok",
        "hf-cuda-bf16",
        f"{len(out)} rollouts, {tokens} tokens in {dt:.2f}s = {tokens / dt:,.0f} tok/s on "
        f"{torch.cuda.get_device_name() if DEVICE == 'cuda' else 'cpu'}; logits vs CPU fp32: max rel err {err:.3g}, "
        f"same argmax {bool(top_agree)}",
    )


@check("device-map-auto")
def device_map(model_dir: str) -> None:
    import torch

    from thoughtlens import load

    lm = load(model_dir, device=None, device_map="auto", dtype="bf16")
    devices = sorted({str(p.device) for p in lm.hf_model.parameters()})
    ids = lm.to_tokens("Hello there")
    with torch.no_grad():
        logits = lm.hf_model(ids.to(devices[0])).logits
    assert torch.isfinite(logits.float()).all()
    report("ok", "device-map-auto", f"parameters on {devices}; forward finite")


@check("receiver-heads-cuda")
def receiver_heads(model_dir: str) -> None:
    import numpy as np

    from thoughtlens import load
    from thoughtlens.anchors.attention.white_box import analyze_attention
    from thoughtlens.trace.reasoning_trace import ReasoningTrace

    sentences = [
        "First, we add the tens.",
        "Twelve plus thirty is forty-two.",
        "Let me check the units.",
        "Two plus zero is two.",
        "The tens give forty.",
        "So the total is forty-two.",
        "Checking again gives the same.",
        "Therefore the answer is 42.",
    ]
    traces = [
        ReasoningTrace.parse("Q: What is 12 + 30?\nA:", " " + " ".join(sentences[i:] + sentences[:i])) for i in range(3)
    ]
    results = {}
    for key, device, dtype in (("test", DEVICE, "bf16"), ("ref", "cpu", "float32")):
        lm = load(model_dir, device=device, dtype=dtype)
        sync()
        t0 = time.perf_counter()
        res = analyze_attention(lm, traces, proximity_ignore=2, suppression=False, top_k=5)
        sync()
        results[key] = (res, time.perf_counter() - t0)
    (gpu, t_gpu), (cpu, t_cpu) = results["test"], results["ref"]
    kg, kc = np.asarray(gpu.receiver.kurtosis, float), np.asarray(cpu.receiver.kurtosis, float)
    ok = np.isfinite(kg) | np.isnan(kc)
    from scipy.stats import spearmanr

    both = np.isfinite(kg) & np.isfinite(kc)
    rho = spearmanr(kg[both], kc[both]).statistic if both.sum() > 2 else float("nan")
    top = ", ".join(f"L{h.layer}H{h.head}" for h in gpu.receiver.top[:5])
    report(
        "ok" if ok.all() and rho > 0.8 else "FAIL",
        "receiver-heads-cuda",
        f"{len(traces)} traces in {t_gpu:.2f}s (CPU fp32 {t_cpu:.2f}s); top {top}; "
        f"kurtosis rank corr vs CPU fp32 {rho:.3f}",
    )


@check("vllm-in-process")
def vllm_backend(model_dir: str) -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        report("skip", "vllm-in-process", "vLLM is not installed here (pip install 'thoughtlens[vllm]')")
        return
    from thoughtlens.sample.base import SamplingParams, requests_for
    from thoughtlens.sample.registry import make_sampler

    sampler = make_sampler("vllm", model=model_dir, dtype="bfloat16", gpu_memory_utilization=0.3, max_model_len=2048)
    t0 = time.perf_counter()
    out = sampler.sample(requests_for(["Q: What is 12 + 30?\nA:"], 32), SamplingParams(max_new_tokens=64, seed=0))
    dt = time.perf_counter() - t0
    tokens = sum(c.n_tokens for c in out)
    report("ok", "vllm-in-process", f"{len(out)} rollouts, {tokens} tokens in {dt:.2f}s = {tokens / dt:,.0f} tok/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", help="a local model directory (default: a tiny random Llama with --tokenizer's tokenizer)"
    )
    ap.add_argument("--tokenizer", help="tokenizer directory for the tiny random model")
    ap.add_argument("--workdir", default="/tmp/thoughtlens-gpu-check")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the script itself")
    args = ap.parse_args()
    import torch

    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU visible to torch: nothing to check (--device cpu runs a dry run)", file=sys.stderr)
        return 1
    if DEVICE == "cuda":
        print(
            f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
            f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB",
            flush=True,
        )
    model_dir = args.model
    if model_dir is None:
        if not args.tokenizer:
            print("pass --model DIR, or --tokenizer DIR for a tiny random model", file=sys.stderr)
            return 1
        model_dir = tiny_model_dir(args.tokenizer, args.workdir)
    hf_backend(model_dir)
    device_map(model_dir)
    receiver_heads(model_dir)
    if DEVICE == "cuda":  # vLLM's CPU build is checked by tests/sample/test_sample_vllm_engine.py instead
        vllm_backend(model_dir)
    return FAILS


if __name__ == "__main__":
    sys.exit(main())
