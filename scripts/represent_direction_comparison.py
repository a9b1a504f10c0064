"""DiffMean vs PCA vs probe directions: detection (held-out AUROC) and steering (effect per unit of fluency cost).

    OMP_NUM_THREADS=1 python scripts/represent_direction_comparison.py [--cache DIR] [--steer-rollouts 8]
        [--json docs/represent_directions.json]

Three concepts, three direction methods (`thoughtlens.represent.directions`: `diff_in_means` = Arditi et al.'s
`get_mean_diff`, `pca_direction` = first PC of paired differences as RepE, `probe_direction` = logistic weights;
the last two signed and scaled to the mean difference's length along their axis, so a scale means the same):

- uncertainty_management vs other published sentences, and plan_generation vs other published sentences
  (bundled model reading the 20 published traces, resid_post layer --layer, mean over each sentence; cached by
  `represent_published_probe.py --collect-only`); detection AUROC with GroupKFold over problems (5 folds),
  CI resampling problems.
- refusal: the project's harmful vs harmless instructions (`thoughtlens/represent/data/refusal_prompts.json`),
  last prompt token at blocks.4.hook_resid_pre (the layer `represent_refusal.py` chose); each prompt its own group.

Steering (AxBench's question: does the better detector steer better?): uncertainty_management, direction x1 added
at the probe layer on --steer-problems published problems x --steer-rollouts rollouts, 64 new tokens, outcome =
fraction of sentences the learned labeller tags uncertainty_management; refusal, direction x1 added at layer 4 on
--steer-prompts harmless instructions x --steer-rollouts rollouts, 32 new tokens, outcome = phrase matcher.
Effect vs scale 0 with a two-stage bootstrap CI, fluency cost = perplexity ratio under the unsteered model,
and effect per unit of log perplexity ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
METHODS = ("diff_in_means", "pca", "probe")


def main(argv=None) -> int:
    import torch
    from represent_uncertainty_steering import DATA, load_activations, problem_prompts

    import thoughtlens
    from thoughtlens.model.load import cache_dir
    from thoughtlens.represent.directions import direction, held_out_auroc
    from thoughtlens.represent.refusal import chat_prompts, is_refusal, last_token_activations, refusal_prompts
    from thoughtlens.represent.steering import steering_effect
    from thoughtlens.trace.categories import first_tag
    from thoughtlens.trace.labelers import get_labeler
    from thoughtlens.trace.split import split_sentences

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--layer", type=int, default=12)
    p.add_argument("--refusal-layer", type=int, default=4)
    p.add_argument("--steer-problems", type=int, default=2)
    p.add_argument("--steer-prompts", type=int, default=2)
    p.add_argument("--steer-rollouts", type=int, default=8)
    p.add_argument("--no-steer", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=REPO / "docs" / "represent_directions.json")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    report: dict = {"model": "SmolLM2-135M-Instruct (bundled), fp32", "detection": [], "steering": []}

    acts = load_activations(args.cache or cache_dir() / "represent" / "published-smollm2")
    X, groups = acts.get(args.layer, "mean"), acts.meta["problem"].to_numpy()
    sets = {}
    for concept in ("uncertainty_management", "plan_generation"):
        y = (acts.meta["category"] == concept).to_numpy()
        sets[concept] = (X, y)
        for m in METHODS:
            r = held_out_auroc(X, y, groups, method=m)
            report["detection"].append(
                {
                    "concept": concept,
                    "method": m,
                    "auroc": r.auroc,
                    "ci": r.ci,
                    "n_pos": r.n_pos,
                    "n_neg": r.n_neg,
                    "held_out": "problems (GroupKFold 5)",
                    "where": f"blocks.{args.layer}.hook_resid_post, sentence mean",
                }
            )
            print(f"{concept:>24} {m:>14}: AUROC {r.auroc:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]", flush=True)

    model = thoughtlens.load(dtype=torch.float32)
    P = refusal_prompts()
    name = f"blocks.{args.refusal_layer}.hook_resid_pre"
    a = last_token_activations(model, chat_prompts(model, P["harmful"]), name)[name]
    b = last_token_activations(model, chat_prompts(model, P["harmless"]), name)[name]
    Xr = np.vstack([a, b])
    yr = np.r_[np.ones(len(a), bool), np.zeros(len(b), bool)]
    gr = np.arange(len(Xr))  # every prompt is its own group
    for m in METHODS:
        r = held_out_auroc(Xr, yr, gr, method=m)
        report["detection"].append(
            {
                "concept": "refusal (harmful vs harmless)",
                "method": m,
                "auroc": r.auroc,
                "ci": r.ci,
                "n_pos": r.n_pos,
                "n_neg": r.n_neg,
                "held_out": "prompts (KFold 5)",
                "where": f"{name}, last prompt token",
            }
        )
        print(f"{'refusal':>24} {m:>14}: AUROC {r.auroc:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]", flush=True)

    if not args.no_steer:
        learned = get_labeler("learned")

        def unc_rate(text: str) -> float:
            sents = [text[i:j] for i, j in split_sentences(text)]
            if not sents:
                return 0.0
            return float(np.mean([first_tag(t) == "uncertainty_management" for t in learned.label_sentences(sents)]))

        problems = [pr for _, pr in problem_prompts(model, args.data, args.steer_problems)]
        harmless = chat_prompts(model, P["harmless"][: args.steer_prompts])
        Xu, yu = sets["uncertainty_management"]
        for concept, prompts, vec_of, hook, outcome, toks in (
            (
                "uncertainty_management",
                problems,
                lambda m: direction(Xu[yu], Xu[~yu], m),
                f"blocks.{args.layer}.hook_resid_post",
                unc_rate,
                64,
            ),
            ("refusal (on harmless prompts)", harmless, lambda m: direction(a, b, m), name, is_refusal, 32),
        ):
            first = None
            for m in METHODS:
                vec = vec_of(m)
                res = steering_effect(
                    model,
                    prompts,
                    vec,
                    hook=hook,
                    scales=[1.0],
                    outcome=outcome,
                    n_rollouts=args.steer_rollouts,
                    max_new_tokens=toks,
                    seed=args.seed,
                    baseline=first,
                )
                first = first or res  # one unsteered sample for the three directions
                base, row = res.rows[0], res.rows[-1]
                cost = math.log(row.perplexity_ratio)
                out = {
                    "concept": concept,
                    "method": m,
                    "hook": hook,
                    "scale": 1.0,
                    "direction_norm": float(vec.norm()),
                    "baseline_rate": base.rate,
                    "rate": row.rate,
                    "effect": row.effect,
                    "ci": row.ci,
                    "perplexity_ratio": row.perplexity_ratio,
                    "effect_per_log_ppl": row.effect / cost if cost > 0 else None,
                    "n_rollouts": row.n_rollouts,
                    "max_new_tokens": toks,
                }
                report["steering"].append(out)
                print(
                    f"steer {concept} {m}: rate {base.rate:.3f} -> {row.rate:.3f}, effect {row.effect:+.3f} "
                    f"[{row.ci[0]:+.3f}, {row.ci[1]:+.3f}], ppl x{row.perplexity_ratio:.2f} "
                    f"({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    report["seconds"] = time.perf_counter() - t0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
