"""Train the planted-anchor reasoning toy model and measure its held-out accuracy.

    python scripts/train_reasoning_toy.py --out runs/toy --seed 0            # 4000 + 300 steps
    python scripts/train_reasoning_toy.py --out runs/toy --seed 0            # again: resumes / re-evaluates

Phase 1 writes runs/toy/step_NNNNNN/ checkpoints (log-spaced) and runs/toy/pretrained/; phase 2 (the
fine-tune on all non-held-out digit pairs, `toy_model.ToyFinetuneConfig`) writes runs/toy/finetune/step_NNNNNN/;
runs/toy/final/ is the finished model (what `thoughtlens.load` and `thoughtlens bench-anchors` open) and
runs/toy/summary.json holds seed, steps, wall time per phase and the held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/toy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop (resumable) after this much training time")
    ap.add_argument("--finetune-steps", type=int, default=300, help="phase 2 steps (0: no phase 2)")
    ap.add_argument("--finetune-lr", type=float, default=1e-3)
    ap.add_argument("--eval-n", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import thoughtlens
    from thoughtlens.groundtruth.toy_model import ToyFinetuneConfig, accuracy, train_toy_model

    t0 = time.perf_counter()
    final = train_toy_model(
        args.out,
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        max_seconds=args.max_seconds,
        device=args.device,
        finetune=ToyFinetuneConfig(steps=args.finetune_steps, lr=args.finetune_lr) if args.finetune_steps > 0 else None,
        on_progress=lambda r: (
            print(f"step {r['step']}/{r['total']} loss {r['loss']:.4f} ({r['seconds']:.0f} s)", flush=True)
            if r["step"] % 200 == 0
            else None
        ),
    )
    train_s = time.perf_counter() - t0
    out = Path(args.out)

    def read_log(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else [{}]

    log, ft = read_log(out / "log.jsonl"), read_log(out / "finetune" / "log.jsonl")
    summary = {
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "finetune_steps": args.finetune_steps,
        "finetune_lr": args.finetune_lr,
        "threads": args.threads,
        "device": args.device,
        "train_seconds_total": log[-1].get("seconds"),
        "finetune_seconds_total": ft[-1].get("seconds"),
        "train_seconds_this_call": round(train_s, 1),
        "last_step": log[-1].get("step"),
        "final_loss": log[-1].get("loss"),
        "finetune_last_step": ft[-1].get("step"),
        "finetune_final_loss": ft[-1].get("loss"),
    }
    if final.is_dir():
        t1 = time.perf_counter()
        acc = accuracy(thoughtlens.load(str(final), dtype="float32"), n=args.eval_n, seed=args.seed + 1)
        summary.update({"accuracy": asdict(acc), "eval_seconds": round(time.perf_counter() - t1, 1)})
        print(
            f"held-out: answer accuracy {acc.answer_accuracy:.1%}, chain validity {acc.chain_validity:.1%}, "
            f"parsed {acc.parse_rate:.1%}, {acc.two_path_steps:.1%} with exactly 2 path steps (n={acc.n})"
        )
    else:
        print("stopped before the end: run again to resume")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
