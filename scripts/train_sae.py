"""Train SAEs of every architecture on the bundled model's middle-layer residual stream, on CPU, and
print one table of L0, FVU, CE loss recovered and dead fraction (docs/benchmarks.md, "SAEs").

    .venv/bin/python scripts/train_sae.py                         # defaults: the table in docs/benchmarks.md
    .venv/bin/python scripts/train_sae.py --train-tokens 200000 --archs topk,batchtopk

One pass of the model feeds every SAE (the activations are cached under --cache, so a rerun skips
the model). The transcoder reads the same layer's MLP input (ln2.hook_normalized) and predicts its
output (hook_mlp_out). Training text: GSM8K test problems (question + worked answer) except the last
--eval-docs, which are held out for the evaluation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import thoughtlens
from thoughtlens.sae import ActivationSource, TrainConfig, build_sae, read_corpus, save_sae, train_saes
from thoughtlens.sae.evaluate import evaluate_saes

ALL = ["standard", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk", "transcoder"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=",".join(ALL))
    p.add_argument("--layer", type=int, default=None, help="default: n_layers // 2")
    p.add_argument("--expansion", type=int, default=8)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--l1", type=float, default=5.0, help="L1 coefficient of the standard SAE and the transcoder")
    p.add_argument("--l0", type=float, default=0.3, help="L0 coefficient of the JumpReLU SAE")
    p.add_argument("--train-tokens", type=int, default=4064)
    p.add_argument("--epochs", type=float, default=2.0, help="passes over the cached training activations")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-docs", type=int, default=150)
    p.add_argument("--eval-tokens", type=int, default=508)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--dtype",
        default=None,
        help="model dtype for the activations and the CE evaluation (default: thoughtlens.load's)",
    )
    p.add_argument("--cache", default="runs/sae_acts")
    p.add_argument("--out", default="runs/saes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = thoughtlens.load(dtype=args.dtype)
    L = model.cfg.n_layers // 2 if args.layer is None else args.layer
    d = model.cfg.d_model
    resid, mlp_in, mlp_out = (
        f"blocks.{L}.hook_resid_post",
        f"blocks.{L}.ln2.hook_normalized",
        f"blocks.{L}.hook_mlp_out",
    )
    docs = read_corpus("gsm8k")
    train_docs, eval_docs = docs[: -args.eval_docs], docs[-args.eval_docs :]
    archs = args.archs.split(",")
    hooks = [resid] + ([mlp_in, mlp_out] if "transcoder" in archs else [])
    hooks = sorted(hooks, key=model.hook_names.index)
    source = ActivationSource(
        model,
        hooks,
        train_docs,
        max_tokens=args.train_tokens,
        batch_size=args.batch_size,
        buffer_size=min(2**15, args.train_tokens),
        cache_dir=f"{args.cache}_L{L}_{len(hooks)}h_{args.train_tokens}_{str(model.dtype).removeprefix('torch.')}",
    )
    cached = source.cached
    torch.manual_seed(0)
    saes = {}
    for a in archs:
        common = dict(d_in=d, d_sae=args.expansion * d, hook_name=resid, model_name=model.name)
        if a == "transcoder":
            saes[a] = build_sae(
                architecture=a,
                **{**common, "hook_name": mlp_in},
                hook_name_out=mlp_out,
                apply_b_dec_to_input=False,
                l1_coefficient=args.l1,
            )
        elif a in ("topk", "batchtopk", "matryoshka_batchtopk"):
            saes[a] = build_sae(architecture=a, **common, k=args.k)
        elif a == "jumprelu":
            saes[a] = build_sae(architecture=a, **common, l0_coefficient=args.l0)
        else:
            saes[a] = build_sae(architecture=a, **common, l1_coefficient=args.l1)
    last = [0.0]

    def show(event):
        now = time.perf_counter()
        if event.task == "activations" and now - last[0] > 10:
            last[0] = now
            print(f"  activations {event.completed}/{event.total}  ({event.elapsed_s:.0f} s)", flush=True)
        if event.task == "sae training" and (now - last[0] > 15 or event.completed == event.total):
            last[0] = now
            print(f"  step {event.completed}/{event.total} ({event.elapsed_s:.0f} s): {event.description}", flush=True)

    source.on_progress = show
    total = int(args.train_tokens * args.epochs)
    t1 = time.perf_counter()
    result = train_saes(
        saes,
        source,
        TrainConfig(total_activations=total, lr=args.lr, dead_window=min(50_000, total // 2)),
        on_progress=show,
    )
    t2 = time.perf_counter()
    metrics = evaluate_saes(
        model,
        result.saes,
        eval_docs,
        max_tokens=args.eval_tokens,
        batch_size=max(1, min(8, -(-args.eval_tokens // 127))),
    )
    t3 = time.perf_counter()
    out = Path(args.out)
    for name, sae in result.saes.items():
        save_sae(sae, out / name)
    rows = []
    print(
        f"\nSmolLM2-135M-Instruct ({model.dtype}), {resid} (transcoder: {mlp_in} -> {mlp_out}), "
        f"d_sae = {args.expansion} x {d}, "
        f"{total} training activations, batch {args.batch_size}, eval on {metrics[archs[0]].n_tokens} held-out tokens"
    )
    print("| architecture | L0 | FVU | CE loss recovered | CE clean / spliced / zero | dead | dense |")
    print("|---|---|---|---|---|---|---|")
    for name, m in metrics.items():
        rows.append({"architecture": name, **m.as_dict()})
        print(
            f"| {name} | {m.l0:.1f} | {m.fvu:.3f} | {m.ce_loss_recovered:.3f} | "
            f"{m.ce_clean:.3f} / {m.ce_spliced:.3f} / {m.ce_zero:.3f} | "
            f"{m.dead_fraction:.1%} | {m.dense_fraction:.1%} |"
        )
    print(
        f"\ntime: activations+training {t2 - t1:.0f} s ({'cached activations' if cached else 'model pass included'}), "
        f"eval {t3 - t2:.0f} s, total {t3 - t0:.0f} s; SAEs saved under {out}/"
    )
    (out / "metrics.json").write_text(
        json.dumps(
            {"rows": rows, "seconds": {"train": t2 - t1, "eval": t3 - t2, "total": t3 - t0}, "args": vars(args)},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
