"""Score the thought-anchors pipeline against the planted-anchor toy model's ground truth.

    python scripts/bench_anchors.py --model runs/toy/final --store runs/bench.sqlite --out runs/bench --seed 0

Same as `thoughtlens bench-anchors`; writes bench.json and bench.md (the table) into --out. The store makes
the run resumable: the same command continues where a killed one stopped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/toy/final")
    ap.add_argument("--store", default="runs/bench.sqlite")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-traces", type=int, default=24)
    ap.add_argument("--n-rollouts", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--rescore",
        metavar="RUN_ID",
        default=None,
        help="score a finished run in --store again (current metric code, nothing sampled)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from thoughtlens.groundtruth.benchmark import BenchConfig, run_benchmark, save_result, score_store

    cfg = BenchConfig(n_traces=args.n_traces, n_rollouts=args.n_rollouts, seed=args.seed)
    t0 = time.perf_counter()
    if args.rescore:
        result = score_store(args.store, args.rescore, cfg, f"{args.rescore}-wb", args.model)
    else:
        result = run_benchmark(args.model, args.store, cfg, on_progress=lambda m: print(m, flush=True))
    seconds = time.perf_counter() - t0
    result.extra["seconds"] = round(seconds, 1)
    out = Path(args.out)
    save_result(result, out / "bench.json", cfg)
    md = result.to_markdown()
    (out / "bench.md").write_text(md + "\n")
    print(md)
    print(
        {k: v for k, v in result.extra.items() if k != "receiver_heads"}, f"valid {result.n_valid}/{result.n_sampled}"
    )


if __name__ == "__main__":
    main()
