"""Everything of docs/ground_truth.md from one command: train the toy model, run the anchors benchmark on it,
grok modular addition. Each step resumes where a killed run stopped.

    python scripts/ground_truth.py --seed 0 --out runs/gt
    python scripts/ground_truth.py --seed 0 --out runs/gt --only toy,bench     # skip grokking
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/gt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="training device (the benchmark runs on CPU)")
    ap.add_argument("--only", default="toy,bench,grok", help="comma-separated subset of toy,bench,grok")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if not only <= {"toy", "bench", "grok"}:
        ap.error(f"--only takes a comma-separated subset of toy,bench,grok, got {args.only!r}")
    out, seed, threads = Path(args.out), str(args.seed), str(args.threads)
    steps = [
        [
            "toy",
            HERE / "train_reasoning_toy.py",
            "--out",
            out / "toy",
            "--seed",
            seed,
            "--threads",
            threads,
            "--device",
            args.device,
        ],
        [
            "bench",
            HERE / "bench_anchors.py",
            "--model",
            out / "toy" / "final",
            "--store",
            out / "bench.sqlite",
            "--out",
            out / "bench",
            "--seed",
            seed,
            "--threads",
            threads,
        ],
        [
            "grok",
            HERE / "grokking.py",
            "--out",
            out / "grok",
            "--seed",
            seed,
            "--threads",
            threads,
            "--device",
            args.device,
        ],
    ]
    for name, *cmd in steps:
        if name not in only:
            continue
        print("+", " ".join(map(str, cmd)), flush=True)
        subprocess.run([sys.executable, *map(str, cmd)], check=True)


if __name__ == "__main__":
    main()
