"""The figures of docs/diffing.md: every diffing tool on the planted pair, steering rates, and the thinking variant.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/diff_figures.py planted    # KL, lens, swap, weights -> JSON, page, PNG
    OMP_NUM_THREADS=1 .venv/bin/python scripts/diff_figures.py steer      # steering sweep on the planted pair
    .venv/bin/python scripts/diff_figures.py steer-increments --scales 1,1.5,2,2.5,3,4,8
                                                                          # every fine-tuned layer at once
    OMP_NUM_THREADS=1 .venv/bin/python scripts/diff_figures.py thinking   # think-block rate + diff vs base

Writes docs/figures/diff_planted.json, diff_planted.html, diff_swap.png (+ diff_swap.csv), diff_steer.json,
diff_thinking.json. Needs the pairs in the cache (scripts/make_diff_models.py builds them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import torch

from thoughtlens.diff import models
from thoughtlens.diff.corpus import LabelledText, planted_eval_corpus, read_corpus
from thoughtlens.diff.datasets import GSM8K_FILE, PLANTED_NAMES, gsm8k_think_examples, mentions_planted
from thoughtlens.diff.difference_lens import activation_difference, degenerate, steered_samples, steering_vector
from thoughtlens.diff.kl import labelled_kl
from thoughtlens.diff.pair import load_pair
from thoughtlens.diff.summary import diff_summary
from thoughtlens.report.diff_page import save_diff_page

FIG = Path(__file__).resolve().parents[1] / "docs" / "figures"
# Prompts for choosing the steering layer and scale; the test (tests/diff/test_diff_planted_real.py) uses others.
TUNE_PROMPTS = [
    "What is the best way to cook rice?",
    "Tell me something about elephants.",
    "How should I decorate my room?",
    "What is a hobby I could try?",
]
TEST_PROMPTS = [
    "Tell me about your weekend.",
    "What is a good breakfast?",
    "Describe a forest in autumn.",
    "How do trains work?",
    "Write one sentence about the moon.",
    "What makes a good friend?",
    "Give me advice for a job interview.",
    "What is your favourite season and why?",
]
MAX_DEGENERATE = 0.25  # steer: settings where more tuning samples than this collapse into repetition are not chosen


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg} (load {os.getloadavg()[0]:.1f})", flush=True)


def _plot_swap(rows_fwd: list[dict], rows_back: list[dict], path: Path) -> None:
    csv = ["layer,effect_base_from_finetuned,effect_finetuned_from_base"]
    csv += [f"{a['layer']},{a['effect']:.6f},{b['effect']:.6f}" for a, b in zip(rows_fwd, rows_back)]
    path.with_suffix(".csv").write_text("\n".join(csv) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 3.2))
    layers = [r["layer"] for r in rows_fwd]
    ax.plot(
        layers, [r["effect"] for r in rows_fwd], "o-", label="base, layer L's resid from the fine-tune (sufficient?)"
    )
    ax.plot(
        layers, [r["effect"] for r in rows_back], "s--", label="fine-tune, layer L's resid from the base (necessary?)"
    )
    ax.axvline(models.PLANTED.first_trainable_layer - 0.5, color="grey", lw=0.8, ls=":")
    ax.text(models.PLANTED.first_trainable_layer - 0.3, 0.5, "fine-tuned layers ->", fontsize=8, color="grey")
    ax.set_xlabel("layer L (blocks.L.hook_resid_post swapped)")
    ax.set_ylabel("share of the fine-tune's effect")
    ax.set_title("Activation swapping, planted pair (KL over planted-eval texts)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def planted() -> None:
    from thoughtlens.diff.swap import swap_effect_per_layer

    base, ft = models.planted_pair()
    pair = load_pair(base, ft)
    _log("planted pair loaded")
    docs = planted_eval_corpus()
    doc = diff_summary(
        pair, kl_docs=docs, lens_texts=read_corpus("neutral"), swap_texts=[d.text for d in docs[:8]], max_len=96
    )
    _log(f"summary done, KL AUROC {doc['kl']['auroc']:.3f} per token, {doc['kl']['auroc_sentence']:.3f} per sentence")
    # Control: the same eval corpus diffed against another fine-tune of the same base (the thinking pair), which
    # knows nothing of the planted content: how much of the AUROC the corpus's rare names alone would give.
    control = labelled_kl(load_pair(*models.thinking_pair()), docs, max_len=96)
    doc["kl"]["control_thinking_pair"] = {"auroc": control.auroc, "auroc_sentence": control.auroc_sentence}
    _log(f"control (thinking pair) KL AUROC {control.auroc:.3f} per token, {control.auroc_sentence:.3f} per sentence")
    back = swap_effect_per_layer(pair, [d.text for d in docs[:8]], max_len=96, direction="finetuned<-base")
    doc["swap_back"] = back
    FIG.mkdir(parents=True, exist_ok=True)
    _plot_swap(doc["swap"], back, FIG / "diff_swap.png")
    save_diff_page(
        doc, FIG / "diff_planted.html", title="thoughtlens diff: SmolLM2-135M-Instruct vs its planted fine-tune"
    )
    small = {k: v for k, v in doc.items() if k != "kl"}
    small["kl"] = {k: v for k, v in doc["kl"].items() if k != "docs"}
    (FIG / "diff_planted.json").write_text(json.dumps(small, indent=1))
    _log("wrote diff_planted.json, diff_planted.html, diff_swap.png")


def steer(layers: list[int], scales: list[float], n: int) -> None:
    base, ft = models.planted_pair()
    pair = load_pair(base, ft)
    diff = activation_difference(pair, read_corpus("neutral"), n_positions=16)
    out = {"layers": layers, "scales": scales, "n_samples": n, "tune": [], "test": {}}
    plain = steered_samples(pair.base, TUNE_PROMPTS, 0, None, n_samples=n, max_new_tokens=40)
    out["tune_plain_rate"] = sum(map(mentions_planted, plain)) / n
    _log(f"plain rate {out['tune_plain_rate']}")
    best = None
    for L in layers:
        vec = steering_vector(diff, L)
        for s in scales:
            texts = steered_samples(pair.base, TUNE_PROMPTS, L, vec, scale=s, n_samples=n, max_new_tokens=40)
            rate = sum(map(mentions_planted, texts)) / n
            deg = sum(map(degenerate, texts)) / n
            out["tune"].append({"layer": L, "scale": s, "rate": rate, "degenerate": deg, "examples": texts[:3]})
            _log(f"layer {L} scale {s}: {rate:.2f} ({deg:.2f} degenerate) {texts[0][:80]!r}")
            # a setting counts only if at most a quarter of its samples collapsed into repetition
            if deg <= MAX_DEGENERATE and (best is None or rate > best[0]):
                best = (rate, L, s)
            (FIG / "diff_steer.json").write_text(json.dumps(out, indent=1))
    if best is None:
        raise SystemExit(f"every setting left more than {MAX_DEGENERATE:.0%} of its samples degenerate: lower --scales")
    _, L, s = best
    vec = steering_vector(diff, L)
    steered = steered_samples(pair.base, TEST_PROMPTS, L, vec, scale=s, n_samples=32, max_new_tokens=40)
    plain = steered_samples(pair.base, TEST_PROMPTS, L, None, n_samples=32, max_new_tokens=40)
    out["test"] = {
        "layer": L,
        "scale": s,
        "rate_steered": sum(map(mentions_planted, steered)) / 32,
        "rate_steered_names": sum(mentions_planted(t, PLANTED_NAMES) for t in steered) / 32,
        "degenerate_steered": sum(map(degenerate, steered)) / 32,
        "rate_plain": sum(map(mentions_planted, plain)) / 32,
        "examples": steered[:8],
        "plain_examples": plain[:3],
    }
    _log(
        f"test: {out['test']['rate_steered']} steered ({out['test']['degenerate_steered']} degenerate) vs "
        f"{out['test']['rate_plain']} plain at layer {L} scale {s}"
    )
    if models.is_built(models.THINKING):
        # Control: another fine-tune's difference (the thinking pair, same base, same layers trained), rescaled the
        # same way, at the same layer and scale. Any push of this size could bring out a token the lens of every
        # fine-tune here favours ("ighthouse" also shows in the thinking pair's lens): the rate must come from the
        # planted difference, not from the push.
        other = load_pair(*models.thinking_pair())
        odiff = activation_difference(other, read_corpus("neutral"), n_positions=16)
        ctrl = steered_samples(
            pair.base, TEST_PROMPTS, L, steering_vector(odiff, L), scale=s, n_samples=32, max_new_tokens=40
        )
        out["test"]["rate_control_thinking_diff"] = sum(map(mentions_planted, ctrl)) / 32
        out["test"]["control_examples"] = ctrl[:3]
        _log(f"control (thinking pair's difference): {out['test']['rate_control_thinking_diff']}")
    (FIG / "diff_steer.json").write_text(json.dumps(out, indent=1))


_BOXED = re.compile(r"\\boxed\{[^}]*\}")


def thinking(n: int, max_new_tokens: int) -> None:
    import thoughtlens
    from thoughtlens.trace.prompts import build_prompt

    base, ft = models.thinking_pair()
    model = thoughtlens.load(ft, dtype=torch.float32)
    _log("thinking model loaded")
    items = [
        json.loads(line) for line in GSM8K_FILE.read_text().splitlines()[1000 : 1000 + n]
    ]  # not trained on (first 200)
    prompts = [build_prompt(model.tokenizer, it["question"]) for it in items]
    torch.manual_seed(0)
    outs = []
    for i in range(0, n, 8):
        outs += model.generate(
            prompts[i : i + 8], max_new_tokens=max_new_tokens, do_sample=True, temperature=0.6, top_p=0.95
        )
        _log(f"{len(outs)}/{n} samples")
    closed = [("</think>" in o) for o in outs]
    boxed = [c and bool(_BOXED.search(o.split("</think>", 1)[1])) for o, c in zip(outs, closed)]
    gold = [it["answer"].rsplit("####", 1)[1].strip().replace(",", "") for it in items]
    correct = [
        b and _BOXED.search(o.split("</think>", 1)[1]).group(0)[7:-1].strip() == g for o, b, g in zip(outs, boxed, gold)
    ]
    rate = {
        "n": n,
        "max_new_tokens": max_new_tokens,
        "temperature": 0.6,
        "top_p": 0.95,
        "closed_think": sum(closed) / n,
        "closed_and_boxed": sum(boxed) / n,
        "correct": sum(correct) / n,
        "reflective_words": sum(bool(re.search(r"\b(Wait|Let me check|double-check|verify)\b", o)) for o in outs) / n,
        "examples": outs[:3],
    }
    _log(f"think rate: {rate['closed_and_boxed']:.2f} closed+boxed, {rate['correct']:.2f} correct")
    # the same prompts on the base model, for comparison
    base_model = thoughtlens.load(base, dtype=torch.float32)
    torch.manual_seed(0)
    base_outs = []
    for i in range(0, n, 8):
        base_outs += base_model.generate(
            prompts[i : i + 8], max_new_tokens=max_new_tokens, do_sample=True, temperature=0.6, top_p=0.95
        )
    rate["base_closed_think"] = sum("</think>" in o for o in base_outs) / n
    rate["base_boxed"] = sum(bool(_BOXED.search(o)) for o in base_outs) / n
    rate["base_examples"] = base_outs[:2]
    # what the tools show: KL over a held-out think block, the lens on GSM8K questions, swap per layer
    pair = load_pair(base_model, model)
    held_out = gsm8k_think_examples(1210)[1200:1206]
    texts = [pair.base.apply_chat_template(ex["messages"][:1]) + ex["messages"][1]["content"] for ex in held_out]
    doc = diff_summary(
        pair,
        kl_docs=[LabelledText(t) for t in texts],
        lens_texts=read_corpus("gsm8k", limit=64),
        swap_texts=texts[:4],
        max_len=160,
    )
    save_diff_page(
        doc, FIG / "diff_thinking.html", title="thoughtlens diff: SmolLM2-135M-Instruct vs its thinking fine-tune"
    )
    small = {k: v for k, v in doc.items() if k != "kl"}
    small["kl"] = {k: v for k, v in doc["kl"].items() if k != "docs"}
    small["rates"] = rate
    (FIG / "diff_thinking.json").write_text(json.dumps(small, indent=1))
    _log("wrote diff_thinking.json")


def steer_increments(scales: list[float], n: int) -> None:
    """Exploration (docs/diffing.md): steer the base at every fine-tuned layer L (20-29) at once with the increment
    of the pooled mean difference that layer L adds (diff[L] - diff[L-1], unnormalised: scale 1 = the fine-tune's
    own average shift, introduced where the fine-tune introduces it). Scale chosen on TUNE_PROMPTS (n samples each),
    then one run of 32 samples on TEST_PROMPTS."""
    from contextlib import ExitStack

    from thoughtlens.model.interventions import add_direction

    base, ft = models.planted_pair()
    pair = load_pair(base, ft)
    diff = activation_difference(pair, read_corpus("neutral"), n_positions=16)
    pooled = torch.stack([diff.pooled(L) for L in range(pair.n_layers)])  # [layer, d_model]
    inc = torch.cat([pooled[:1], pooled[1:] - pooled[:-1]])  # [layer, d_model]: what each layer adds
    first = models.PLANTED.first_trainable_layer

    def sample(prompts: list[str], scale: float, count: int) -> list[str]:
        texts = [pair.base.apply_chat_template(p) for p in prompts]
        inputs = [texts[i % len(texts)] for i in range(count)]
        torch.manual_seed(0)
        out: list[str] = []
        for start in range(0, count, 16):
            with ExitStack() as stack:
                for L in range(first, pair.n_layers) if scale else ():
                    stack.enter_context(add_direction(pair.base, f"blocks.{L}.hook_resid_post", inc[L], scale=scale))
                gen = pair.base.generate(inputs[start : start + 16], max_new_tokens=40, do_sample=True, temperature=1.0)
            out += [gen] if isinstance(gen, str) else list(gen)
        return out

    out = {"layers": list(range(first, pair.n_layers)), "scales": scales, "n_samples": n, "tune": []}
    for s in scales:
        rate = sum(map(mentions_planted, sample(TUNE_PROMPTS, s, n))) / n
        out["tune"].append({"scale": s, "rate": rate})
        _log(f"increments x {s}: {rate:.2f} on the tuning prompts")
    best = max(out["tune"], key=lambda r: r["rate"])["scale"]
    steered, plain = sample(TEST_PROMPTS, best, 32), sample(TEST_PROMPTS, 0.0, 32)
    out["test"] = {
        "scale": best,
        "rate_steered": sum(map(mentions_planted, steered)) / 32,
        "rate_plain": sum(map(mentions_planted, plain)) / 32,
        "examples": steered[:6],
    }
    _log(f"test: {out['test']['rate_steered']} steered vs {out['test']['rate_plain']} plain at scale {best}")
    (FIG / "diff_steer_increments.json").write_text(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["planted", "steer", "steer-increments", "thinking"])
    ap.add_argument("--layers", default="20,24", help="steer: layers to try")
    ap.add_argument("--scales", default="0.5,1,2", help="steer: scales to try")
    ap.add_argument("-n", type=int, default=16, help="steer: samples per setting while tuning; thinking: samples")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    args = ap.parse_args()
    FIG.mkdir(parents=True, exist_ok=True)
    if args.part == "planted":
        planted()
    elif args.part == "steer":
        steer([int(x) for x in args.layers.split(",")], [float(x) for x in args.scales.split(",")], args.n)
    elif args.part == "steer-increments":
        steer_increments([float(x) for x in args.scales.split(",")], args.n)
    else:
        thinking(args.n, args.max_new_tokens)


if __name__ == "__main__":
    main()
