"""Sentence activations of every layer vs a plain forward: time ratio and peak memory.

    python benchmarks/bench_sentence_activations.py [--tokens 4096] [--repeats 2] [--dtype float32]

The longest published Thought Anchors trace (prompt + chain of thought), read by the bundled
SmolLM2-135M-Instruct and cut to --tokens tokens; its published sentences mapped to tokens.
Streamed: `sentence_activations(hooks="resid_post")` for all 30 layers, mean and last token per sentence.
Baselines measured in the same run: the causal LM's plain forward (`hf_model(input_ids)`, with logits) and
the decoder alone (`hf_model.base_model(input_ids)`, no logits). Peak RSS is the process's high-water mark
(ru_maxrss) after the streamed run, which runs first, minus the RSS after loading the model and one 8-token forward (which pages in the memory-mapped weights).
Target (issue 14): peak <= loaded model + 0.5 GB, time <= 1.2x a plain forward.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "thought-anchors" / "deepseek-r1-distill-qwen-14b"


def _rss_gb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def _maxrss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main(argv=None) -> int:
    import torch

    import thoughtlens
    from thoughtlens.anchors.categories import load_published
    from thoughtlens.report.published import locate_chunks
    from thoughtlens.represent.sentence_activations import sentence_activations, token_ranges

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dtype", default="float32")
    args = p.parse_args(argv)

    df = load_published(DATA)
    longest = max(df["trace_id"].unique(), key=lambda t: len(json.loads((DATA / t / "base_solution.json").read_text())["solution"]))
    base = json.loads((DATA / longest / "base_solution.json").read_text())
    chunks = df[df["trace_id"] == longest].sort_values("sentence_index")["text"].tolist()
    spans = [(a + len(base["prompt"]), b + len(base["prompt"])) for a, b in locate_chunks(base["solution"], chunks)]

    model = thoughtlens.load(dtype=args.dtype)
    tokens, ranges = token_ranges(model, base["prompt"] + base["solution"], spans, max_tokens=args.tokens)
    ranges = [r for r in ranges if r[1] > r[0]]
    last = max(b for _, b in ranges)
    torch.set_grad_enabled(False)
    model(tokens[:, :8])  # page in every weight (safetensors are memory-mapped) before taking the baseline
    loaded = _rss_gb()

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    streamed = timed(lambda: sentence_activations(model, tokens, ranges, hooks="resid_post"))
    peak_streamed = _maxrss_gb() - loaded
    ids = tokens[:, :last]
    plain = timed(lambda: model.hf_model(input_ids=ids, use_cache=False))
    decoder = timed(lambda: model.hf_model.base_model(input_ids=ids, use_cache=False))
    peak_any = _maxrss_gb() - loaded
    print(f"trace {longest}: {last} tokens, {len(ranges)} sentences, {model.cfg.n_layers} layers x resid_post, "
          f"dtype {model.dtype}, threads {torch.get_num_threads()}")
    print(f"plain forward (with logits): {plain:.2f} s;  decoder only: {decoder:.2f} s;  streamed sentence activations: {streamed:.2f} s")
    print(f"time ratio streamed / plain forward = {streamed / plain:.2f}x  (vs decoder only {streamed / decoder:.2f}x; target <= 1.2x)")
    print(f"RSS after load {loaded:.2f} GB; peak above it during the streamed run {peak_streamed:.2f} GB "
          f"(target <= 0.5 GB); during the plain forwards {peak_any:.2f} GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
