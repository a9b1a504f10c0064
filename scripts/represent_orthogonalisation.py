"""Weight orthogonalisation vs hook ablation on the bundled model, in float32 and float64: where 1e-4 comes from.

    OMP_NUM_THREADS=1 python scripts/represent_orthogonalisation.py [--layer 4]
        [--json docs/represent_orthogonalisation.json]

Direction: the refusal difference in means at blocks.{layer}.hook_resid_pre (even-indexed halves of the project's
harmful / harmless prompts, as `represent_refusal.py`'s direction A). For each precision, the hook-ablated model
(`ablate_direction`) and the weight-orthogonalised copy (`orthogonalized_hf_model`, the same weights
`orthogonalize_weights` saves) read 4 harmful prompts; we report max |logit difference| over real tokens, and,
as the yardstick, float32's own rounding error on the *unedited* model (|logits32 - logits64|). HF's Llama RMSNorm
computes in float32 even in a float64 model, so the float64 figure is limited by that, not by the edit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    import torch

    import thoughtlens
    from thoughtlens import HookedModel
    from thoughtlens.represent.ablation import ablate_direction, orthogonalized_hf_model
    from thoughtlens.represent.refusal import refusal_direction, refusal_prompts

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer", type=int, default=4)
    p.add_argument("--json", type=Path, default=REPO / "docs" / "represent_orthogonalisation.json")
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    P = refusal_prompts()
    logits = {}
    for dt in (torch.float32, torch.float64):
        m = thoughtlens.load(dtype=dt)
        if dt == torch.float32:
            d = refusal_direction(m, P["harmful"][0::2], P["harmless"][0::2], args.layer)
        ids, mask = m._left_padded([m.apply_chat_template(h) for h in P["harmful"][:4]])
        keep = mask.bool()
        clean = m(ids, attention_mask=mask)[keep].double()
        with ablate_direction(m, d):
            hooked = m(ids, attention_mask=mask)[keep].double()
        edited = HookedModel(orthogonalized_hf_model(m, d))(ids, attention_mask=mask)[keep].double()
        logits[str(dt).split(".")[-1]] = (clean, hooked, edited)
    (c32, h32, g32), (c64, h64, g64) = logits["float32"], logits["float64"]
    mx = lambda t: float(t.abs().max())  # noqa: E731
    report = {
        "model": "SmolLM2-135M-Instruct (bundled)",
        "direction": f"refusal diff-in-means, blocks.{args.layer}.hook_resid_pre",
        "n_prompts": 4,
        "n_positions": int(len(c32)),
        "max_abs_logit": mx(c64),
        "weights_vs_hooks_float32": mx(g32 - h32),
        "weights_vs_hooks_float64": mx(g64 - h64),
        "float32_rounding_unedited": mx(c32 - c64),
        "float32_rounding_hooked": mx(h32 - h64),
        "float32_rounding_edited": mx(g32 - g64),
        "ablation_effect_float64": mx(g64 - c64),
        "mean_abs_diff_float32": float((g32 - h32).abs().mean()),
        "float32_rounding_unedited_mean": float((c32 - c64).abs().mean()),
    }
    for k, v in report.items():
        print(f"{k}: {v:.3e}" if isinstance(v, float) else f"{k}: {v}")
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
