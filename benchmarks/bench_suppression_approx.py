"""P5 approximate: the first-order suppression matrix (anchors.attention.suppression_approx) vs the exact one
(anchors.attention.suppression.suppression_matrix, paper reduction by default), same trace as bench_suppression.py,
both timed in this run. Targets (issue 18): >= 20x faster, Pearson >= 0.8, top-1 affected sentence per
row matching on >= 70 % of rows. The approximate matrix uses the same reduction (paper / raw) as the exact
one ("direct_grad": mean log of its per-token KL proxy; module docstring of anchors.attention.suppression_approx).

    python benchmarks/bench_suppression_approx.py [--tokens 1024] [--min-sentences 40] [--reduction paper|raw]
        [--method direct_grad|grad_loglik] [--proxy nucleus_gap|token|both] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import thoughtlens
from thoughtlens.anchors.attention.suppression import suppression_matrix
from thoughtlens.anchors.attention.suppression_approx import (
    APPROX_METHODS,
    PROXIES,
    agreement,
    suppression_matrix_approx,
)
from thoughtlens.anchors.attention.white_box import load_trace_file, trace_tokens

DEFAULT_TRACE = (
    Path(__file__).resolve().parents[2] / "shared/data/thought-anchors/deepseek-r1-distill-qwen-14b/"
    "correct_base_solution/problem_330/base_solution.json"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--min-sentences", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--reduction", default="paper", choices=["paper", "raw"])
    ap.add_argument("--method", default="direct_grad", choices=list(APPROX_METHODS))
    ap.add_argument(
        "--proxy",
        default=None,
        choices=[*PROXIES, "both"],
        help="direct_grad's per-position scalar (default: nucleus_gap with the paper reduction); both = one row each",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = thoughtlens.load(dtype=torch.float32)
    _, trace, _ = load_trace_file(args.trace)
    tt = trace_tokens(model, trace, max_tokens=args.tokens)
    if len(tt.ranges) < args.min_sentences:
        raise SystemExit(f"only {len(tt.ranges)} sentences within {args.tokens} tokens: raise --tokens")
    with torch.no_grad():  # one plain (SDPA) forward of the trace with logits: the unit of the approx's cost
        model.hf_model(input_ids=tt.tokens[None])
        t0 = time.perf_counter()
        model.hf_model(input_ids=tt.tokens[None])
        t_forward = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = suppression_matrix(
        model,
        tt.tokens,
        tt.ranges,
        temperature=args.temperature,
        batch_size=args.batch_size,
        kl_reduction=args.reduction,
    )
    t_exact = time.perf_counter() - t0
    proxies = list(PROXIES) if args.proxy == "both" else [args.proxy]
    for proxy in proxies:
        t0 = time.perf_counter()
        approx = suppression_matrix_approx(
            model,
            tt.tokens,
            tt.ranges,
            temperature=args.temperature,
            batch_size=args.batch_size,
            method=args.method,
            kl_reduction=args.reduction,
            proxy=proxy,
        )
        t_approx = time.perf_counter() - t0
        out = {
            "model": model.name,
            "trace": Path(args.trace).parent.name,
            "tokens": int(tt.tokens.shape[0]),
            "sentences": len(tt.ranges),
            "reduction": args.reduction,
            "method": args.method,
            "proxy": proxy or "default",
            "threads": args.threads,
            "load_1min": round(os.getloadavg()[0], 1),
            "seconds_exact": round(t_exact, 1),
            "seconds_approx": round(t_approx, 1),
            "speedup": round(t_exact / t_approx, 2),
            "seconds_plain_forward": round(t_forward, 2),
            "approx_in_plain_forwards": round(t_approx / t_forward, 1),
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in agreement(approx, exact).items()},
        }
        print(json.dumps(out, indent=2))
        print(
            f"speedup {out['speedup']}x (target >= 20), Pearson {out['pearson']} (>= 0.8), "
            f"top-1 rows {out['top1']:.0%} (>= 70 %)",
            flush=True,
        )


if __name__ == "__main__":
    main()
