"""Attribution patching (AtP, AtP*) vs full activation patching on the bundled model, IOI prompts.

1. Accuracy: every head's output (hook_z, all positions at once) patched clean -> corrupt on
   --n-corr IOI pairs; Pearson and Spearman correlations of AtP / AtP* with activation patching.
2. Speed: every head x every position (30 x 9 x pos nodes) on --n-speed pairs; wall time of AtP vs
   the full activation-patching sweep of the same nodes, and the ratio (target >= 20x).

    python benchmarks/bench_patching.py [--dtype bf16] [--n-corr 20] [--n-speed 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy import stats

import thoughtlens
from thoughtlens.circuits import activation_patching, attribution_patching
from thoughtlens.circuits.ioi import ioi_prompts


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _corr(a, b) -> dict:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return {"pearson": float(stats.pearsonr(a, b)[0]), "spearman": float(stats.spearmanr(a, b)[0])}


def accuracy(model, n: int) -> dict:
    ioi = ioi_prompts(model, n=n)
    metric = ioi.metric()
    kw = dict(site="z", per_position=False)
    exact, t_exact = _timed(lambda: activation_patching(model, ioi.clean, ioi.corrupt, metric, **kw))
    atp, t_atp = _timed(lambda: attribution_patching(model, ioi.clean, ioi.corrupt, metric, **kw))
    star, t_star = _timed(lambda: attribution_patching(model, ioi.clean, ioi.corrupt, metric, method="atp*", **kw))
    e = exact["value"].to_numpy()
    top = np.argsort(-np.abs(e))[:10]
    return {
        "n_pairs": n,
        "n_tokens": int(ioi.clean.shape[1]),
        "nodes": len(exact),
        "clean_logit_diff": exact.attrs["clean_metric"],
        "corrupt_logit_diff": exact.attrs["corrupt_metric"],
        "atp_vs_patching": _corr(atp["value"], e),
        "abs_atp_vs_abs_patching": _corr(np.abs(atp["value"]), np.abs(e)),
        "atp_star_vs_abs_patching": _corr(star["value"], np.abs(e)),
        "top10_heads_by_patching": [f"L{exact['layer'][i]}H{exact['head'][i]} {e[i]:+.3f}" for i in top],
        "seconds": {"patching": t_exact, "atp": t_atp, "atp_star": t_star},
    }


def speed(model, n: int) -> dict:
    ioi = ioi_prompts(model, n=n)
    metric = ioi.metric()
    kw = dict(site="z", per_position=True)
    attribution_patching(model, ioi.clean, ioi.corrupt, metric, **kw)  # warm-up (first autograd call)
    atp, t_atp = _timed(lambda: attribution_patching(model, ioi.clean, ioi.corrupt, metric, **kw))
    star, t_star = _timed(lambda: attribution_patching(model, ioi.clean, ioi.corrupt, metric, method="atp*", **kw))
    exact, t_exact = _timed(lambda: activation_patching(model, ioi.clean, ioi.corrupt, metric, **kw))
    return {
        "n_pairs": n,
        "nodes": len(exact),
        "seconds": {"patching": t_exact, "atp": t_atp, "atp_star": t_star},
        "speedup_atp": t_exact / t_atp,
        "speedup_atp_star": t_exact / t_star,
        "atp_vs_patching": _corr(atp["value"], exact["value"]),
        "atp_star_vs_abs_patching": _corr(star["value"], exact["value"].abs()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--n-corr", type=int, default=20)
    ap.add_argument("--n-speed", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    model = thoughtlens.load(dtype=args.dtype)
    result = {"model": model.name, "dtype": str(model.dtype), "torch_threads": torch.get_num_threads()}
    for part, fn, n in (("speed", speed, args.n_speed), ("accuracy", accuracy, args.n_corr)):
        result[part] = fn(model, n)
        print(json.dumps({part: result[part]}, indent=2), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
