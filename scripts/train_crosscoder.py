"""Train a BatchTopK crosscoder on the planted diffing pair and check, without telling it what was planted,
whether its fine-tuned-only latents (decoder-norm tag B-only, then Latent Scaling) read the planted content
(docs/diffing_crosscoder.md).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/train_crosscoder.py                  # the figures in the doc
    .venv/bin/python scripts/train_crosscoder.py --layer 24 --expansion 8 --out runs/cc_planted
    .venv/bin/python scripts/train_crosscoder.py --layer 29 --out runs/crosscoder_planted_v2_l29 --inspect 10
                                                                                    # read a run

Needs the planted pair built (scripts/make_diff_models.py --only planted); refuses to build it itself.
Corpus: the planted fine-tune's own chat examples (rendered with the chat template), the bundled neutral
paragraphs and GSM8K questions: the diffing-toolkit trains its crosscoders on chat, pretraining and the
fine-tune's training data together (`configs/diffing/method/crosscoder.yaml`, `datasets`).
Layer: the fine-tune only trains layers >= models.PLANTED.first_trainable_layer, so every layer below holds the
same activations in both models; the default is the middle of the trained block.
A top context counts as planted when the token or the 12 tokens before it mention the fictional country or
capital (`datasets.mentions_planted`); the corpus-wide rate of such tokens is the chance level.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from thoughtlens.diff import corpus as diff_corpus
from thoughtlens.diff import datasets, models
from thoughtlens.diff.crosscoder import train_crosscoder
from thoughtlens.model.load import load
from thoughtlens.progress import line_printer
from thoughtlens.sae.activations import token_windows


def planted_rate(tok, texts, context_size: int, left: int = 12) -> float:
    """Fraction of corpus tokens (BOS left out) whose own text plus `left` tokens before it mention the plant."""
    hits = total = 0
    for w in token_windows(tok, texts, context_size):
        for p in range(1, len(w)):
            hits += datasets.mentions_planted(tok.decode(w[max(1, p - left) : p + 1]))
            total += 1
    return hits / max(total, 1)


def inspect(run: Path, texts: list[str], base, planted, n_latents: int, left: int = 12) -> dict:
    """Two rankings of a saved run's live latents, whatever their tag, with the 10 top contexts of the first
    `n_latents` of each and how many of those mention the plant: by relative decoder norm
    ||d_B|| / (||d_A|| + ||d_B||), and by Latent Scaling rank sum among the fine-tuned-side candidates (the paper's
    own ranking, sparsity-artifacts-crosscoders `tools/halfway_interventions.py`). Asks whether the crosscoder
    sees the planted change as latents that lean to the fine-tune without being specific to it. A context counts
    as planted when its token with the `left` tokens before it mentions the plant ("planted_top"), or with the 3
    tokens after it too ("planted_top_with_right": a bridge such as "Fun fact: the light of[ a] lighthouse")."""
    from thoughtlens.diff.crosscoder import CrosscoderResult, top_contexts

    res = CrosscoderResult.load(run)
    live = [r for r in res.latents if r.get("relative_norm") is not None and r["cls"] != "dead"]
    rankings = {
        "by_relative_norm": sorted(live, key=lambda r: -r["relative_norm"])[:n_latents],
        "by_latent_scaling_rank_sum": sorted(
            (r for r in live if r.get("candidate") == "b"), key=lambda r: r["rank_sum"]
        )[:n_latents],
    }
    wanted = sorted({r["latent"] for rows in rankings.values() for r in rows})
    ctx = top_contexts(res.crosscoder, base, planted, texts, wanted, n=10, left=left, on_progress=line_printer())
    out: dict = {"run": str(run)}
    for name, rows in rankings.items():
        print(name, flush=True)
        out[name] = []
        for r in rows:
            c = ctx.get(r["latent"], [])
            hits = sum(datasets.mentions_planted(q["left"] + q["token"]) for q in c)
            hits_r = sum(datasets.mentions_planted(q["left"] + q["token"] + q["right"]) for q in c)
            out[name].append(
                {k: r.get(k) for k in ("latent", "relative_norm", "cls", "nu_error", "nu_recon", "rank_sum")}
                | {
                    "planted_top": hits,
                    "planted_top_with_right": hits_r,
                    "n_top": len(c),
                    "top": [q["left"][-40:] + "[" + q["token"] + "]" + q["right"] for q in c[:4]],
                }
            )
            print(
                f"  latent {r['latent']}: r={r['relative_norm']:.3f} ({r['cls']}) nu_eps={r.get('nu_error')} "
                f"nu_r={r.get('nu_recon')}: planted top contexts {hits}/{len(c)} ({hits_r} with the right "
                f"context) {out[name][-1]['top'][:1]}",
                flush=True,
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    n_trained = 30 - models.PLANTED.first_trainable_layer
    p.add_argument("--layer", type=int, default=models.PLANTED.first_trainable_layer + n_trained // 2)
    p.add_argument("--expansion", type=int, default=4)
    p.add_argument("--k", type=float, default=32)
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--max-tokens", type=int, default=30_000)
    p.add_argument("--gsm8k", type=int, default=150, help="GSM8K questions added to the corpus")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--null", action="store_true", help="control: the base model against itself (expect no specific latent)"
    )
    p.add_argument("--out", default="runs/crosscoder_planted")
    p.add_argument(
        "--inspect",
        type=int,
        default=0,
        metavar="N",
        help="do not train: read the run in --out and show the top contexts of its first N latents by "
        "relative norm and by Latent Scaling rank sum (written to <out>/inspect.json)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not args.null and not models.is_built(models.PLANTED):
        raise SystemExit("the planted pair is not built: run scripts/make_diff_models.py --only planted first")
    t0 = time.perf_counter()
    base_dir, planted_dir = (models.base_dir(), models.base_dir()) if args.null else models.planted_pair()
    base, planted = load(base_dir, dtype=torch.float32), load(planted_dir, dtype=torch.float32)
    tok = base.tokenizer
    chats = [tok.apply_chat_template(r["messages"], tokenize=False) for r in datasets.read_planted()]
    texts = chats + diff_corpus.read_corpus("neutral")
    try:
        texts += diff_corpus.read_corpus("gsm8k", limit=args.gsm8k)
    except Exception as exc:  # the shared data may be absent; the corpus is still mixed
        print(f"no GSM8K ({exc})")
    import random

    random.Random(args.seed).shuffle(texts)
    print(f"corpus: {len(texts)} documents ({len(chats)} planted chat examples); layer {args.layer}", flush=True)
    if args.inspect:
        doc = inspect(Path(args.out), texts, base, planted, args.inspect)
        doc["chance_planted_rate"] = round(planted_rate(tok, texts, 128), 4)
        print(f"chance rate of a planted context {doc['chance_planted_rate']:.1%}")
        (Path(args.out) / "inspect.json").write_text(json.dumps(doc, indent=1, default=str))
        return
    res = train_crosscoder(
        base,
        planted,
        texts,
        args.layer,
        expansion=args.expansion,
        k=args.k,
        epochs=args.epochs,
        max_tokens=args.max_tokens,
        context_size=128,
        batch_size=256,
        lr=args.lr,
        seed=args.seed,
        on_progress=line_printer(),
    )
    elapsed = time.perf_counter() - t0
    chance = planted_rate(tok, texts, 128)
    out = Path(args.out)
    res.save(out)
    summary = {
        "elapsed_s": round(elapsed, 1),
        "counts": res.counts(),
        "chance_planted_rate": round(chance, 4),
        "meta": res.meta,
        "specific": [],
    }
    print(
        f"\n{res.counts()}  FVU A {res.meta['fvu_a']:.3f} B {res.meta['fvu_b']:.3f}  L0 {res.meta['l0']}  "
        f"({elapsed:.0f} s; chance rate of a planted context {chance:.1%})"
    )
    for j in res.specific:
        r, ctx = res.latents[j], res.contexts.get(j, [])
        hits = sum(datasets.mentions_planted(c["left"] + c["token"]) for c in ctx)
        summary["specific"].append(
            {
                "latent": j,
                "relative_norm": r["relative_norm"],
                "nu_error": r["nu_error"],
                "nu_recon": r["nu_recon"],
                "frequency": r["frequency"],
                "planted_top": hits,
                "n_top": len(ctx),
                "top": [c["left"][-40:] + "[" + c["token"] + "]" for c in ctx[:5]],
            }
        )
        print(
            f"latent {j}: r={r['relative_norm']:.2f} nu_eps={r['nu_error']:.2f} nu_r={r['nu_recon']:.2f} "
            f"freq={r['frequency']:.4f} planted top contexts {hits}/{len(ctx)}"
        )
        for c in ctx[:5]:
            print(f"    {c['activation']:7.2f}  ...{c['left'][-50:]!r} [{c['token']!r}]")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"wrote {out}/summary.json")


if __name__ == "__main__":
    main()
