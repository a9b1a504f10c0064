"""Grokking modular addition (p = 113) with the progress measures of Nanda et al. 2023.

    python scripts/grokking.py --out runs/grok --seed 0          # 2 CPU threads by default

Writes runs/grok/step_NNNNNN/ checkpoints, measures.csv (every measure at every checkpoint), progress.png
(the plot of all of them) and summary.json (key frequencies, when train / test accuracy reach 100 % / 99 %,
wall time). Interrupted runs resume from the last checkpoint. --export-small PATH also writes the final
weights in float16 (the small checkpoint the tests read).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/grok")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--export-small", default=None, help="write the final weights (float16) to this directory")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from thoughtlens.train.grokking import (
        GrokkingConfig,
        grokking_measures,
        load_checkpoint,
        plot_grokking,
        save_checkpoint,
        train_grokking,
    )

    cfg = replace(GrokkingConfig(), seed=args.seed, steps=args.steps)
    t0 = time.perf_counter()
    result = train_grokking(
        args.out,
        cfg,
        max_seconds=args.max_seconds,
        device=args.device,
        on_progress=lambda r: (
            print(f"step {r['step']}/{r['total']} train loss {r['loss']:.4f} ({r['seconds']:.0f} s)", flush=True)
            if r["step"] % 1000 == 0
            else None
        ),
    )
    train_s = time.perf_counter() - t0
    df, summary = grokking_measures(args.out)
    df.to_csv(Path(args.out) / "measures.csv", index=False)
    plot_grokking(df, Path(args.out) / "progress.png", summary)
    log = [json.loads(line) for line in (Path(args.out) / "log.jsonl").read_text().splitlines()]
    out = {
        "seed": args.seed,
        "steps": args.steps,
        "last_step": result.step,
        "finished": result.finished,
        "threads": args.threads,
        "device": args.device,
        "train_seconds_total": log[-1]["seconds"],
        "train_seconds_this_call": round(train_s, 1),
        "measure_seconds": round(time.perf_counter() - t0 - train_s, 1),
        "key_frequencies": summary.key_freqs,
        "step_train_acc_100": summary.step_train_100,
        "step_test_acc_99": summary.step_test_99,
        "final": summary.final,
        "config": asdict(cfg),
    }
    print("key frequencies:", summary.key_freqs)
    print(df.iloc[:: max(len(df) // 25, 1)].round(4).to_string(index=False))
    if args.export_small and result.finished:
        small = Path(args.export_small)
        small.mkdir(parents=True, exist_ok=True)
        model = load_checkpoint(sorted(Path(args.out).glob("step_*"))[-1]).half()
        save_checkpoint(model, small, cfg)
    (Path(args.out) / "summary.json").write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
