"""Steer the bundled model with an "uncertainty / backtracking" direction and count uncertainty sentences.

    OMP_NUM_THREADS=1 python scripts/represent_uncertainty_steering.py [--mode problem|continue] [--layer 12]
        [--alpha 1.0] [--problems 4] [--rollouts 16] [--max-new-tokens 96] [--seed 0]
        [--json docs/represent_uncertainty_steering.json]

Venhoff et al. 2025 ("Understanding reasoning in thinking language models via steering vectors", arXiv
2506.18167) in small. Direction: difference in means (Arditi et al.'s `get_mean_diff`) of the bundled
SmolLM2-135M-Instruct's resid_post at --layer, mean over each sentence's tokens, between the published
sentences labelled `uncertainty_management` and all other published sentences, the model reading the 20
published traces (activations from `scripts/represent_published_probe.py --collect-only`, cached per trace).
Steering: the model answers --problems of the published problems (chat template, the published instruction
"Solve this math problem step by step...") with the direction times -alpha, 0, +alpha added at that hook at
every position (`thoughtlens.represent.steering.steering_effect`, HF sampler, temperature 0.7, top-p 0.95,
per-rollout seeds), --rollouts rollouts per problem and condition. Outcome per rollout: the fraction of its
sentences (thoughtlens.trace.split.split_sentences) whose first tag from the project's default labeller
(`thoughtlens.trace.labelers.get_labeler()`, the learned MiniLM labeller) is `uncertainty_management`.
Effect = condition minus baseline, with a two-stage bootstrap CI (problems, then rollouts); fluency cost =
perplexity of the steered text under the unsteered model / that of the unsteered text. Also reported: the
pooled sentence rate with a Newcombe (Wilson hybrid) CI on its difference, which treats sentences as
independent (optimistic), and the same rates with the rule-based labeller as a cross-check.

--mode continue (for "subtracting lowers it", which needs a non-zero base rate): instead of a bare problem, each
rollout continues a published trace: the published prompt (raw, as the traces were generated: "... Solution:
\n<think>\n") followed by the published chain of thought up to (not including) its first sentence labelled
`uncertainty_management` at index >= --min-prefix-sentences (the correct_base_solution trace of each problem). The
cut is fixed by that rule, not tuned on the outcome (--max-prefix-chars skips problems whose prefix is longer, for
CPU time). Only the generated continuation is labelled.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "thought-anchors" / "deepseek-r1-distill-qwen-14b"
CONCEPT = "uncertainty_management"


def load_activations(cache: Path):
    from thoughtlens.represent.sentence_activations import SentenceActivations

    paths = sorted(p for p in cache.glob("*.npz") if ".tmp." not in p.name)
    if not paths:
        raise SystemExit(
            f"no cached activations in {cache}: run scripts/represent_published_probe.py --collect-only --cache {cache}"
        )
    return SentenceActivations.concat([SentenceActivations.from_npz(p) for p in paths])


def problem_prompts(model, data: Path, n: int) -> list[tuple[str, str]]:
    """(problem id, chat prompt) for the first n published problems (sorted by id), the published instruction."""
    out = {}
    for base in sorted(data.glob("*_base_solution/problem_*/base_solution.json")):
        pid = base.parent.name
        if pid not in out:
            user = json.loads(base.read_text())["prompt"].split(" Solution:")[0].strip()
            out[pid] = model.apply_chat_template(user)
    return sorted(out.items())[:n]


def continuation_prompts(
    data: Path, n: int, min_sentences: int = 3, max_chars: int | None = None
) -> list[tuple[str, str]]:
    """(problem id, published prompt + chain of thought cut before an uncertainty sentence) for n problems.

    One trace per problem (correct_base_solution), problems sorted by id; the cut is before the first sentence
    with first tag `uncertainty_management` at index >= min_sentences (a problem without one is skipped, and so
    is one whose chain-of-thought prefix is longer than max_chars characters: long prompts make the rollouts
    and the perplexity pass slow on CPU).
    """
    from thoughtlens.anchors.importance.by_category import load_published
    from thoughtlens.report.published import locate_chunks
    from thoughtlens.trace.categories import first_tag

    df = load_published(data)
    out = []
    for trace_id, g in sorted(df.groupby("trace_id"), key=lambda kv: kv[0]):
        if not trace_id.startswith("correct_base_solution/"):
            continue
        g = g.sort_values("sentence_index")
        cats = [first_tag(t) for t in g["tags"]]
        cut = next((i for i in range(min_sentences, len(cats)) if cats[i] == CONCEPT), None)
        if cut is None:
            continue
        base = json.loads((data / trace_id / "base_solution.json").read_text())
        start = locate_chunks(base["solution"], g["text"].tolist())[cut][0]
        if max_chars is not None and start > max_chars:
            continue
        out.append((f"{trace_id.split('/')[-1]}@{cut}", base["prompt"] + base["solution"][:start]))
    return out[:n]


def main(argv=None) -> int:
    import torch

    import thoughtlens
    from thoughtlens.model.load import cache_dir
    from thoughtlens.represent.directions import diff_in_means, held_out_auroc
    from thoughtlens.represent.steering import steering_effect
    from thoughtlens.stats import newcombe_interval as newcombe
    from thoughtlens.stats import wilson_interval as wilson
    from thoughtlens.trace.categories import first_tag
    from thoughtlens.trace.labelers import get_labeler
    from thoughtlens.trace.split import split_sentences

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument(
        "--cache", type=Path, default=None, help="per-trace activation cache of represent_published_probe.py"
    )
    p.add_argument(
        "--mode",
        choices=["problem", "continue"],
        default="problem",
        help="problem: answer the bare problem (chat template); continue: continue a published trace prefix",
    )
    p.add_argument("--min-prefix-sentences", type=int, default=3, help="--mode continue: shortest prefix, in sentences")
    p.add_argument(
        "--max-prefix-chars",
        type=int,
        default=None,
        help="--mode continue: skip problems whose chain-of-thought prefix is longer (CPU time)",
    )
    p.add_argument("--layer", type=int, default=12)
    p.add_argument(
        "--alpha",
        type=float,
        default=1.0,
        help="scale of the difference-in-means vector (1 = the mean difference itself)",
    )
    p.add_argument("--problems", type=int, default=4)
    p.add_argument("--rollouts", type=int, default=16, help="rollouts per problem and condition")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=REPO / "docs" / "represent_uncertainty_steering.json")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)

    acts = load_activations(args.cache or cache_dir() / "represent" / "published-smollm2")
    meta = acts.meta
    y = (meta["category"] == CONCEPT).to_numpy()
    X = acts.get(args.layer, "mean")
    vec = diff_in_means(X[y], X[~y])  # [d_model]
    det = held_out_auroc(X, y, meta["problem"].to_numpy(), method="diff_in_means")
    print(
        f"direction: {int(y.sum())} {CONCEPT} vs {int((~y).sum())} other sentences of "
        f"{meta['trace_id'].nunique()} traces, layer {args.layer}, |d| = {float(vec.norm()):.2f}; "
        f"held-out-problem AUROC {det.auroc:.3f} [{det.ci[0]:.3f}, {det.ci[1]:.3f}]"
    )

    model = thoughtlens.load(dtype=torch.float32)
    prompts = (
        problem_prompts(model, args.data, args.problems)
        if args.mode == "problem"
        else continuation_prompts(args.data, args.problems, args.min_prefix_sentences, args.max_prefix_chars)
    )
    print(
        f"mode {args.mode}: "
        + ", ".join(f"{pid} ({model.to_tokens(pr).shape[1]} prompt tokens)" for pid, pr in prompts)
    )
    learned, rules = get_labeler("learned"), get_labeler("rules")
    tags_cache: dict[tuple[str, str], list[str]] = {}

    def tags(text: str, labeler) -> list[str]:
        key = (labeler.name, text)
        if key not in tags_cache:
            sents = [text[a:b] for a, b in split_sentences(text)]
            tags_cache[key] = [first_tag(t) for t in labeler.label_sentences(sents)] if sents else []
        return tags_cache[key]

    def rate(text: str) -> float:
        t = tags(text, learned)
        return sum(c == CONCEPT for c in t) / len(t) if t else 0.0

    n_steps = [0]

    def progress(n: int) -> None:
        n_steps[0] += n
        print(
            f"  {n_steps[0]}/{3 * len(prompts)} (condition, problem) done, {time.perf_counter() - t0:.0f} s", flush=True
        )

    res = steering_effect(
        model,
        [pr for _, pr in prompts],
        vec,
        hook=f"blocks.{args.layer}.hook_resid_post",
        scales=[-args.alpha, args.alpha],
        outcome=rate,
        n_rollouts=args.rollouts,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        batch_size=args.batch_size,
        on_progress=progress,
    )
    rows = []
    base = {}
    for r in res.rows:
        texts = [t for per in res.texts[r.scale] for t in per]
        for name, lab in (("learned", learned), ("rules", rules)):
            cats = [c for t in texts for c in tags(t, lab)]
            k, n = sum(c == CONCEPT for c in cats), len(cats)
            if r.scale == 0.0:
                base[name] = (k, n)
            row = {
                "scale": r.scale,
                "labeller": name,
                "sentences": n,
                "uncertainty_sentences": k,
                "sentence_rate": k / n if n else math.nan,
                "sentence_rate_wilson": wilson(k, n) if n else None,
                "sentence_rate_diff_newcombe": None,
            }
            rows.append(row)
        rows[-2].update(
            {
                "rollout_mean_rate": r.rate,
                "effect": r.effect,
                "effect_ci_two_stage_bootstrap": r.ci,
                "perplexity": r.perplexity,
                "perplexity_ratio": r.perplexity_ratio,
                "n_rollouts": r.n_rollouts,
            }
        )
    for row in rows:
        k0, n0 = base[row["labeller"]]
        if row["scale"] != 0.0 and n0 and row["sentences"]:
            row["sentence_rate_diff_newcombe"] = newcombe(row["uncertainty_sentences"], row["sentences"], k0, n0)
    print(f"{'scale':>6} {'labeller':>8} {'sentences':>9} {'rate':>6} {'effect [two-stage CI]':>28} {'ppl ratio':>9}")
    for row in rows:
        eff = (
            f"{row['effect']:+.3f} [{row['effect_ci_two_stage_bootstrap'][0]:+.3f}, "
            f"{row['effect_ci_two_stage_bootstrap'][1]:+.3f}]"
            if "effect" in row
            else ""
        )
        print(
            f"{row['scale']:>6.2f} {row['labeller']:>8} {row['sentences']:>9} {row['sentence_rate']:>6.3f} {eff:>28} "
            f"{row.get('perplexity_ratio', float('nan')):>9.2f}  newcombe {row['sentence_rate_diff_newcombe']}"
        )
    report = {
        "model": "SmolLM2-135M-Instruct (bundled), fp32",
        "concept": CONCEPT,
        "mode": args.mode,
        "min_prefix_sentences": args.min_prefix_sentences if args.mode == "continue" else None,
        "max_prefix_chars": args.max_prefix_chars if args.mode == "continue" else None,
        "layer": args.layer,
        "hook": res.hook,
        "alpha": args.alpha,
        "direction_norm": float(vec.norm()),
        "direction_training": {
            "n_concept": int(y.sum()),
            "n_other": int((~y).sum()),
            "n_traces": int(meta["trace_id"].nunique()),
        },
        "detection_auroc_held_out_problems": {"auroc": det.auroc, "ci": det.ci},
        "problems": [pid for pid, _ in prompts],
        "rollouts_per_problem": args.rollouts,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "temperature": 0.7,
        "top_p": 0.95,
        "rows": rows,
        "examples": {str(s): [per[0] for per in res.texts[s][:3]] for s in res.texts},
        "seconds": time.perf_counter() - t0,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
