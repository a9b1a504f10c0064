"""Sentence activations of every layer vs a plain forward: time ratio and peak memory.

    python benchmarks/bench_sentence_activations.py [--tokens 4096] [--repeats 2] [--dtype float32]
        [--chunk-tokens 1024]

The longest published Thought Anchors trace (prompt + chain of thought), read by the bundled
SmolLM2-135M-Instruct and cut to --tokens tokens; its published sentences mapped to tokens.
Streamed: `sentence_activations(hooks="resid_post", chunk_tokens=...)` for all 30 layers, mean and last token per
sentence (--chunk-tokens 0 = one forward over the whole trace, the version before chunked prefill).
Baselines measured in the same run: the causal LM's plain forward (`hf_model(input_ids)`, with logits) and
the decoder alone (`hf_model.base_model(input_ids)`, no logits). Peak RSS: this process's high-water mark
(VmHWM in /proc/self/status), reset (`echo 5 > /proc/self/clear_refs`) after loading the model and one
8-token forward (which pages in the memory-mapped weights) and before every run, read after it, minus the RSS
after loading (times: best of --repeats; peak: highest over them). Not ru_maxrss, which cannot be reset.
Target (issue 14): peak <= loaded model + 0.5 GB, time <= 1.2x a plain forward.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "thought-anchors" / "deepseek-r1-distill-qwen-14b"


def _rss_gb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def _vmhwm_gb() -> float:
    """This process's peak RSS since the last reset (Linux /proc/self/status VmHWM, kB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def main(argv=None) -> int:
    import torch

    import thoughtlens
    from thoughtlens.anchors.importance.by_category import load_published
    from thoughtlens.report.published import locate_chunks
    from thoughtlens.represent.sentence_activations import sentence_activations, token_ranges

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--chunk-tokens", type=int, default=1024, help="positions per forward (0 = one pass)")
    p.add_argument("--skip-decoder", action="store_true", help="skip the decoder-only baseline (saves one forward)")
    args = p.parse_args(argv)

    df = load_published(DATA)
    longest = max(
        df["trace_id"].unique(),
        key=lambda t: len(json.loads((DATA / t / "base_solution.json").read_text())["solution"]),
    )
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
    ids = tokens[:, :last]

    def timed(fn) -> tuple[float, float]:
        """Best time of --repeats runs, and the peak RSS above the loaded model over them (GB)."""
        import gc

        best, peak = float("inf"), 0.0
        for _ in range(args.repeats):
            gc.collect()
            _reset_peak()
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
            peak = max(peak, _vmhwm_gb() - loaded)
        return best, peak

    chunk = args.chunk_tokens or None
    run_streamed = lambda: sentence_activations(model, tokens, ranges, hooks="resid_post", chunk_tokens=chunk)  # noqa: E731
    run_plain = lambda: model.hf_model(input_ids=ids, use_cache=False)  # noqa: E731
    streamed, peak_streamed = timed(run_streamed)
    plain, peak_plain = timed(run_plain)
    decoder, peak_decoder = (
        (float("nan"), float("nan"))
        if args.skip_decoder
        else timed(lambda: model.hf_model.base_model(input_ids=ids, use_cache=False))
    )
    print(
        f"trace {longest}: {last} tokens, {len(ranges)} sentences, {model.cfg.n_layers} layers x resid_post, "
        f"dtype {model.dtype}, threads {torch.get_num_threads()}, chunk_tokens {chunk}"
    )
    print(
        f"plain forward (with logits): {plain:.2f} s;  decoder only: {decoder:.2f} s;  "
        f"streamed sentence activations: {streamed:.2f} s"
    )
    print(
        f"time ratio streamed / plain forward = {streamed / plain:.2f}x  "
        f"(vs decoder only {streamed / decoder:.2f}x; target <= 1.2x)"
    )
    print(
        f"RSS after load {loaded:.2f} GB; peak (VmHWM) above it during the streamed run {peak_streamed:.2f} GB "
        f"(target <= 0.5 GB); during the plain forward with logits {peak_plain:.2f} GB; "
        f"decoder only {peak_decoder:.2f} GB"
    )
    print(
        json.dumps(
            {
                "tokens": int(last),
                "chunk_tokens": chunk,
                "sentences": len(ranges),
                "layers": model.cfg.n_layers,
                "plain_s": plain,
                "decoder_s": decoder,
                "streamed_s": streamed,
                "time_ratio": streamed / plain,
                "loaded_gb": loaded,
                "peak_streamed_gb": peak_streamed,
                "peak_plain_gb": peak_plain,
                "peak_decoder_gb": peak_decoder,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
