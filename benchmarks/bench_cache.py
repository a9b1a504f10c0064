"""run_with_cache vs a plain Hugging Face forward on the bundled model (and peers when installed).

    .venv/bin/python benchmarks/bench_cache.py [--dtype float32|bfloat16] [--repeats 5]

Prints, in one run: time of caching every residual stream vs plain HF at 1x32 and 8x256 tokens,
and peak RSS of caching *every* hook at 8x256 (each measured in a fresh subprocess) against
plain forward + the bytes of the cached tensors. TransformerLens (bridge) and nnsight rows appear
when `pip install 'thoughtlens[bench]'` has put them in the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _models(dtype):
    from transformers import AutoModelForCausalLM

    import thoughtlens
    from thoughtlens.model.load import BUNDLED_NAME, bundled_gguf_path, converted_gguf

    path = converted_gguf(bundled_gguf_path(), BUNDLED_NAME)
    ours = thoughtlens.load(path, dtype=dtype)
    plain = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").eval()
    return path, ours, plain


def timing(dtype, repeats: int) -> list[dict]:
    path, ours, plain = _models(dtype)
    rows = []
    resid = lambda n: "hook_resid" in n  # noqa: E731 - every residual stream (pre, mid, post)
    peers = _peers(path, plain, ours.tokenizer)
    for batch, pos in [(1, 32), (8, 256)]:
        tokens = torch.randint(100, 20000, (batch, pos), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            base = _median_seconds(lambda: plain(tokens), repeats)
            t_ours = _median_seconds(lambda: ours.run_with_cache(tokens, names_filter=resid), repeats)
            rows.append(
                dict(
                    tool="thoughtlens run_with_cache (all resid)",
                    shape=f"{batch}x{pos}",
                    seconds=t_ours,
                    ratio=t_ours / base,
                )
            )
            for name, fn in peers:
                t = _median_seconds(lambda: fn(tokens), repeats)
                rows.append(dict(tool=name, shape=f"{batch}x{pos}", seconds=t, ratio=t / base))
        rows.append(dict(tool="plain HF forward (baseline)", shape=f"{batch}x{pos}", seconds=base, ratio=1.0))
    return rows


def _peers(path, plain, tokenizer):
    """(name, fn(tokens)) for peer libraries that are installed; each caches every residual stream."""
    peers = []
    try:
        import copy

        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(
            "HuggingFaceTB/SmolLM2-135M-Instruct", hf_model=copy.deepcopy(plain), tokenizer=tokenizer, device="cpu"
        )
        peers.append(
            (
                "TransformerLens bridge run_with_cache (resid)",
                lambda t: bridge.run_with_cache(t, names_filter=lambda n: "resid" in n),
            )
        )
    except Exception as e:  # noqa: BLE001 - optional peer: report and go on
        print(f"(TransformerLens not measured: {type(e).__name__}: {str(e)[:80]})", file=sys.stderr)
    try:
        from nnsight import LanguageModel

        lm = LanguageModel(plain, tokenizer=tokenizer)

        def run(t):
            saved = []
            with lm.trace(t):
                for layer in lm.model.layers:
                    saved.append(layer.output.save())
            return saved

        peers.append(("nnsight trace (save every layer output)", run))
    except Exception as e:  # noqa: BLE001
        print(f"(nnsight not measured: {type(e).__name__}: {str(e)[:80]})", file=sys.stderr)
    return peers


def _rss_child(mode: str, dtype: str) -> None:
    """Run in a fresh process: one forward at 8x256 in `mode`, print peak RSS and cached bytes as JSON."""
    from transformers import AutoModelForCausalLM

    import thoughtlens
    from thoughtlens.model.load import BUNDLED_NAME, bundled_gguf_path, converted_gguf

    dt = getattr(torch, dtype)
    path = converted_gguf(bundled_gguf_path(), BUNDLED_NAME)
    # Load only what this mode needs: ru_maxrss is a lifetime peak.
    if mode == "plain":
        plain = AutoModelForCausalLM.from_pretrained(path, dtype=dt, attn_implementation="sdpa").eval()
    else:
        ours = thoughtlens.load(path, dtype=dt)
    tokens = torch.randint(100, 20000, (8, 256), generator=torch.Generator().manual_seed(0))
    cached = 0
    with torch.no_grad():
        if mode == "plain":
            plain(tokens)
        else:
            _, cache = ours.run_with_cache(tokens)  # every hook, every pattern
            cached = cache.nbytes()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak": peak, "cached": cached}))


def rss(dtype: str) -> dict:
    out = {}
    for mode in ("plain", "cache_all"):
        res = subprocess.run(
            [sys.executable, __file__, "--rss-child", mode, "--dtype", dtype],
            capture_output=True,
            text=True,
            check=True,
        )
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # peers must not try the hub: the model is passed in
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rss-child", default=None)
    args = ap.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child, args.dtype)
        return
    print(f"bench_cache: bundled SmolLM2-135M-Instruct, {args.dtype}, torch threads {torch.get_num_threads()}")
    for r in timing(getattr(torch, args.dtype), args.repeats):
        print(f"  {r['shape']:>6}  {r['tool']:<48} {r['seconds'] * 1e3:9.1f} ms   {r['ratio']:.2f}x plain HF")
    m = rss(args.dtype)
    plain, cached = m["plain"]["peak"], m["cache_all"]
    budget = 1.5 * plain + cached["cached"]
    print(
        f"  peak RSS 8x256: plain forward {plain / 2**30:.2f} GiB; cache every hook {cached['peak'] / 2**30:.2f} GiB "
        f"(cached tensors {cached['cached'] / 2**30:.2f} GiB); ratio to (plain + cached) "
        f"{cached['peak'] / (plain + cached['cached']):.2f}x; target <= 1.5 x plain + cached = {budget / 2**30:.2f} GiB"
    )


if __name__ == "__main__":
    main()
