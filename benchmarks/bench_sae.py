"""SAE training throughput and activation-buffer memory.

1. Throughput: activations/s of one TopK training step (d_in 576 = SmolLM2's d_model, d_sae 8 x 576,
   k 32, batch 1024, float32, Adam), with the sparse decoder (`topk.sparse_forward`, the default)
   against the dense formula `decode(activation(pre_acts(x)))` measured in the same run.
2. Memory: peak RSS of streaming a cached activation set (safetensors shards) through the shuffling
   buffer of `ActivationSource`, against loading the whole set into memory; each in a fresh process.

    .venv/bin/python benchmarks/bench_sae.py [--steps 5] [--threads 1] [--activations 131072 --buffer 16384]
        [--skip-throughput]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

D, K = 576, 32


def throughput(steps: int, batch: int, threads: int) -> dict:
    import torch

    from thoughtlens.sae import build_sae
    from thoughtlens.sae.topk import normalized_mse

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(batch, D)
    out = {}
    for mode in ("dense", "sparse"):
        sae = build_sae(architecture="topk", d_in=D, d_sae=8 * D, k=K, hook_name="h")
        opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
        times = []
        for i in range(steps + 1):
            t = time.perf_counter()
            if mode == "sparse":
                loss = sae.training_loss(x, x, None, 1.0).loss
            else:
                loss = normalized_mse(sae.decode(sae.activation(sae.pre_acts(x))), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:  # the first step pays one-time costs (allocator, Adam state)
                times.append(time.perf_counter() - t)
        times.sort()
        out[mode] = batch / times[len(times) // 2]  # median step
    return out


def _child_peak_rss(code: str) -> float:
    """Peak RSS (MiB) of a fresh interpreter that imports torch and thoughtlens.sae, then runs `code`."""
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across exec into the child's ru_maxrss.
    prog = (
        f"import torch, thoughtlens.sae\n{code}\nprint(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    )
    return int(subprocess.check_output([sys.executable, "-c", prog], text=True).split()[-1]) / 1024


def memory(n: int, buffer: int) -> dict:
    import torch
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix="bench_sae_"))
    shard = 16384
    for i in range(0, n, shard):
        save_file({"activations": torch.randn(min(shard, n - i), D)}, str(tmp / f"shard_{i // shard:05d}.safetensors"))
    meta = {
        "hook_names": ["h"],
        "context_size": 128,
        "exclude_bos": True,
        "max_tokens": None,
        "corpus_sha256": None,
        "widths": [D],
        "model_name": "bench",
        "n_shards": -(-n // shard),
        "n_activations": n,
        "shard_size": shard,
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    stream = (
        f"from thoughtlens.sae import ActivationSource\n"
        f"s = ActivationSource(None, 'h', cache_dir={str(tmp)!r}, buffer_size={buffer}, batch_size=1024)\n"
        f"n = sum(len(b) for b in s)\nassert n == {n}, n"
    )
    whole = (
        f"from safetensors.torch import load_file\nimport glob\n"
        f"x = torch.cat([load_file(f)['activations'] for f in sorted(glob.glob({str(tmp)!r} + '/shard_*'))])\n"
        f"x = x[torch.randperm(len(x))]"
    )
    out = {
        "import_mib": _child_peak_rss("pass"),
        "stream_mib": _child_peak_rss(stream),
        "whole_mib": _child_peak_rss(whole),
        "buffer_mib": buffer * D * 4 / 2**20,
        "data_mib": n * D * 4 / 2**20,
    }
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--activations", type=int, default=131072)
    p.add_argument("--buffer", type=int, default=16384)
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()
    t = None if args.skip_throughput else throughput(args.steps, args.batch, args.threads)
    if t:
        print(
            f"TopK training, d_sae {8 * D}, k {K}, batch {args.batch}, {args.threads} thread(s): "
            f"sparse decoder {t['sparse']:,.0f} act/s, dense formula {t['dense']:,.0f} act/s, "
            f"ratio {t['sparse'] / t['dense']:.2f}x"
        )
    m = memory(args.activations, args.buffer)
    extra_s, extra_w = m["stream_mib"] - m["import_mib"], m["whole_mib"] - m["import_mib"]
    print(
        f"{args.activations} cached activations ({m['data_mib']:.0f} MiB), peak RSS of a process importing torch + "
        f"thoughtlens.sae: {m['import_mib']:.0f} MiB; streaming them through a {args.buffer}-row buffer "
        f"({m['buffer_mib']:.0f} MiB): {m['stream_mib']:.0f} MiB (+{extra_s:.0f}); loading them whole and shuffling: "
        f"{m['whole_mib']:.0f} MiB (+{extra_w:.0f}); ratio of the increments {extra_s / max(extra_w, 1e-9):.2f}"
    )
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
