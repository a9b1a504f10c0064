"""Refusal in small: Arditi et al. 2024's experiment on the bundled SmolLM2-135M-Instruct.

    python scripts/represent_refusal.py [--max-new-tokens 32] [--json docs/represent_refusal.json]

1. The project's 60 harmful-style + 60 harmless instructions (thoughtlens/represent/data/refusal_prompts.json),
   in the chat template, split into halves A (even index) and B (odd index).
2. Difference-in-means direction at each layer's resid_pre, last prompt token, from half A.
3. Layer choice on half A only, as Arditi et al.'s `select_direction` (pipeline/submodules/select_direction.py):
   lowest refusal score of harmful prompts under directional ablation, among layers < 0.8 n_layers whose
   ablation moves the harmless first-token distribution by KL < 0.1. Refusal score = log-odds of the
   refusal tokens ("I", "As") at the first generated position.
4. Held-out evaluation (cross-fitted: half B with A's direction, half A with B's, so all 60 + 60 prompts are
   judged by a direction that did not see them): greedy completions judged by the phrase matcher
   (thoughtlens.represent.refusal.REFUSAL_PHRASES): harmful baseline vs directional ablation (every layer),
   harmless baseline vs activation addition (direction added at its layer's resid_pre, every position).
5. Weight orthogonalisation in fp32: the edited model saved and reloaded gives the hook-ablated logits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    import torch
    from rich.console import Console

    import thoughtlens
    from thoughtlens.model.interventions import add_direction
    from thoughtlens.represent.ablation import ablate_direction, orthogonalize_weights
    from thoughtlens.represent.directions import diff_in_means
    from thoughtlens.represent.refusal import (chat_prompts, is_refusal, last_token_activations, refusal_prompts,
                                               refusal_rate)

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=30)
    p.add_argument("--layer-stride", type=int, default=1, help="try every k-th layer as the direction's layer")
    p.add_argument("--dtype", default=None)
    p.add_argument("--json", type=Path, default=REPO / "docs" / "represent_refusal.json")
    p.add_argument("--skip-weights", action="store_true", help="skip the fp32 weight-orthogonalisation check")
    args = p.parse_args(argv)
    con = Console(stderr=True)
    t0 = time.perf_counter()
    torch.manual_seed(0)

    model = thoughtlens.load(dtype=args.dtype)
    P = refusal_prompts()
    H, S = chat_prompts(model, P["harmful"]), chat_prompts(model, P["harmless"])
    halves = {"A": np.arange(0, 60, 2), "B": np.arange(1, 60, 2)}
    cached = args.json.with_suffix(".acts.npz")  # reused by a rerun with the same --json
    if cached.exists():
        with np.load(cached) as z:
            acts_h = {k[2:]: z[k] for k in z.files if k.startswith("h:")}
            acts_s = {k[2:]: z[k] for k in z.files if k.startswith("s:")}
    else:
        acts_h = last_token_activations(model, H, "resid_pre", batch_size=args.batch_size)
        acts_s = last_token_activations(model, S, "resid_pre", batch_size=args.batch_size)
        np.savez(cached, **{f"h:{k}": v for k, v in acts_h.items()}, **{f"s:{k}": v for k, v in acts_s.items()})
    names = list(acts_h)
    dirs = {h: [diff_in_means(acts_h[n][idx], acts_s[n][idx]) for n in names] for h, idx in halves.items()}
    con.print(f"activations read ({time.perf_counter() - t0:.0f} s)")

    tok = model.tokenizer
    refusal_toks = sorted({tok(w, add_special_tokens=False)["input_ids"][0] for w in ("I", "As")})

    @torch.no_grad()
    def first_token_logp(prompts):
        out = []
        for i in range(0, len(prompts), args.batch_size):
            ids, mask = model._left_padded(prompts[i : i + args.batch_size])
            out.append(torch.log_softmax(model(ids, attention_mask=mask)[:, -1].float(), -1))
        return torch.cat(out)

    def refusal_score(logp):
        pr = logp[:, refusal_toks].exp().sum(-1).clamp(1e-8, 1 - 1e-8)
        return float((pr.log() - (1 - pr).log()).mean())

    HA, SA = [H[i] for i in halves["A"]], [S[i] for i in halves["A"]]
    base_h, base_s = first_token_logp(HA), first_token_logp(SA)
    layer_rows = []
    # from layer 1: every prompt ends with the same template tokens, so resid_pre of layer 0 (their embedding)
    # is identical for all prompts and the difference in means is exactly zero there
    for L in range(1, int(0.8 * model.cfg.n_layers), args.layer_stride):
        with ablate_direction(model, dirs["A"][L]):
            lh, ls = first_token_logp(HA), first_token_logp(SA)
        kl = float((base_s.exp() * (base_s - ls)).sum(-1).mean())
        layer_rows.append({"layer": L, "ablation_refusal_score": refusal_score(lh), "harmless_kl": kl})
        con.print(f"layer {L}: ablated refusal score {layer_rows[-1]['ablation_refusal_score']:+.2f}, KL {kl:.3f}")
    ok = [r for r in layer_rows if r["harmless_kl"] < 0.1] or layer_rows
    layer = min(ok, key=lambda r: r["ablation_refusal_score"])["layer"]
    con.print(f"chosen layer {layer} (baseline refusal score {refusal_score(base_h):+.2f})")

    def generate(prompts, ctx=None):
        texts = []
        for i in range(0, len(prompts), args.batch_size):
            batch = prompts[i : i + args.batch_size]
            if ctx is None:
                texts += model.generate(batch, max_new_tokens=args.max_new_tokens)
            else:
                with ctx():
                    texts += model.generate(batch, max_new_tokens=args.max_new_tokens)
        return texts

    # cross-fitted: half B judged with A's direction and vice versa
    other = {"A": "B", "B": "A"}
    res = {"baseline_harmful": [], "ablated_harmful": [], "baseline_harmless": [], "added_harmless": []}
    for h, idx in halves.items():
        d = dirs[other[h]][layer]
        hp, sp = [H[i] for i in idx], [S[i] for i in idx]
        res["baseline_harmful"] += generate(hp)
        res["ablated_harmful"] += generate(hp, lambda: ablate_direction(model, d))
        res["baseline_harmless"] += generate(sp)
        res["added_harmless"] += generate(sp, lambda: add_direction(model, f"blocks.{layer}.hook_resid_pre", d))
        con.print(f"half {h} generated ({time.perf_counter() - t0:.0f} s)")
    rates = {k: refusal_rate(v) for k, v in res.items()}
    for k, v in rates.items():
        con.print(f"{k}: refusal rate {v:.3f} (n={len(res[k])})")
    cos_ab = float(torch.nn.functional.cosine_similarity(dirs["A"][layer], dirs["B"][layer], dim=0))

    report = {"model": model.name, "dtype": str(model.dtype), "n_harmful": 60, "n_harmless": 60,
              "max_new_tokens": args.max_new_tokens, "layer_stride": args.layer_stride, "layer": layer, "hook": f"blocks.{layer}.hook_resid_pre",
              "direction_norm": float(dirs["A"][layer].norm()), "cosine_direction_A_B": cos_ab,
              "refusal_tokens": [tok.decode([t]) for t in refusal_toks], "layer_sweep": layer_rows,
              "refusal_rate": rates,
              "examples": {k: [(P["harmful" if "harmful" in k else "harmless"][i], v[i]) for i in range(3)]
                           for k, v in res.items()},
              "matched": {k: [bool(is_refusal(t)) for t in v] for k, v in res.items()}}

    if not args.skip_weights:
        m32 = thoughtlens.load(dtype=torch.float32)
        d32 = dirs["A"][layer]
        ids, mask = m32._left_padded(H[:4])
        with torch.no_grad(), ablate_direction(m32, d32):
            hooked = m32(ids, attention_mask=mask)
        with tempfile.TemporaryDirectory() as tmp:
            edited = thoughtlens.load(str(orthogonalize_weights(m32, d32, Path(tmp) / "edited")), dtype=torch.float32)
            with torch.no_grad():
                got = edited(ids, attention_mask=mask)
        keep = mask.bool()
        report["weights_vs_hooks_max_abs_logit_diff"] = float((got - hooked)[keep].abs().max())
        con.print(f"weight-orthogonalised vs hook-ablated logits: max |diff| {report['weights_vs_hooks_max_abs_logit_diff']:.2e}")
    report["seconds"] = time.perf_counter() - t0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    con.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
