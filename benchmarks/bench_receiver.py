"""Peak RSS of receiver-head scoring (streamed sentence attention of all 30 x 9 heads, vertical
scores, kurtosis) on a 4,096-token trace on the bundled default model. Target <= 1.5 GB.

The trace is a published Thought Anchors trace cut to the first --tokens tokens (sentences that end
later are dropped). Peak RSS is the kernel's high-water mark (VmHWM): reset after the model is loaded
(`echo 5 > /proc/self/clear_refs`), so "scoring peak" is the whole process at its largest while
scoring, model weights included. The naive alternative, `output_attentions=True` over all layers,
is computed, not run: layers x heads x T^2 x 4 bytes.

    python benchmarks/bench_receiver.py [--tokens 4096] [--dtype bf16] [--trace PATH] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import time
from pathlib import Path

import numpy as np

import thoughtlens
from thoughtlens.anchors.attention.receiver_heads import find_receiver_heads, vertical_scores
from thoughtlens.anchors.attention.sentence_attention import sentence_attention
from thoughtlens.anchors.attention.white_box import load_trace_file, trace_tokens

DEFAULT_TRACE = (
    Path(__file__).resolve().parents[2] / "shared/data/thought-anchors/deepseek-r1-distill-qwen-14b/"
    "correct_base_solution/problem_6596/base_solution.json"
)  # the longest published trace


def _rss_gb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process, in GB (from /proc: Linux only)."""
    kb = int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))
    return kb * 1024 / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--dtype", default=None, help="fp32 / bf16 (default: the loader's choice, bf16 here)")
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    ap.add_argument("--chunk-rows", type=int, default=256)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    model = thoughtlens.load(dtype=args.dtype)
    _, trace, _ = load_trace_file(args.trace)
    tt = trace_tokens(model, trace, max_tokens=args.tokens)
    gc.collect()
    after_load = _rss_gb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS

    start = time.perf_counter()
    A = sentence_attention(model, tt.tokens, tt.ranges, chunk_rows=args.chunk_rows)  # [layers, heads, S, S]
    vert = vertical_scores(A)
    heads = find_receiver_heads([vert], top_k=5)
    seconds = time.perf_counter() - start
    peak = _rss_gb("VmHWM")

    c, n_tok = model.cfg, int(tt.tokens.shape[0])
    naive_gb = c.n_layers * c.n_heads * n_tok**2 * 4 / 1e9  # fp32 attentions of every layer, held at once
    out = {
        "model": model.name,
        "dtype": str(model.dtype),
        "tokens": n_tok,
        "sentences": len(tt.ranges),
        "rss_after_load_gb": round(after_load, 3),
        "peak_rss_scoring_gb": round(peak, 3),
        "scoring_increment_gb": round(peak - after_load, 3),
        "target_gb": 1.5,
        "naive_output_attentions_fp32_gb_computed": round(naive_gb, 1),
        "seconds": round(seconds, 1),
        "top5": [h.as_dict() for h in heads.top],
        "matrix_bytes": int(A.nbytes),
        "finite_vertical_fraction": float(np.isfinite(vert).mean()),
    }
    print(json.dumps(out, indent=2))
    print(
        f"peak RSS {peak:.2f} GB (target <= 1.5 GB); naive output_attentions {naive_gb:.1f} GB (computed); "
        f"ratio {peak / naive_gb:.3f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
