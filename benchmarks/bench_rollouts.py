"""Rollout throughput: N continuations of one ~300-token prefix on the bundled model.

    .venv/bin/python benchmarks/bench_rollouts.py [--n 32] [--new 128] [--naive-n 4]

(a) naive: one `generate` call per rollout (measured on --naive-n rollouts; tokens/s is per token);
(b) plain batched `generate` with the prefix repeated N times;
(c) thoughtlens' HFSampler: the prefix encoded once, its KV cache repeated, finished rows dropped.
All three sample at temperature 0.6, top-p 0.95; tokens/s counts generated tokens up to and including EOS.
"""

from __future__ import annotations

import argparse
import time

import torch

import thoughtlens
from thoughtlens.sample.base import SampleRequest, SamplingParams
from thoughtlens.sample.hf import HFSampler

PREFIX_PROBLEM = (
    "A farmer has 12 rows of apple trees with 15 trees in each row. Each tree gives 40 apples in a good year, but "
    "this year a frost destroyed one quarter of the blossoms on every tree. The farmer sells apples in boxes of 25 "
    "and keeps 3 boxes for his family. A box sells for 14 dollars at the market, and the farmer pays 2 dollars per "
    "box to a driver who brings the boxes to town. How much money does the farmer make from selling his apples "
    "this year, after paying the driver?"
)
REASONING = (
    " Let me work through this carefully. First, the number of trees is 12 times 15, which is 180 trees. In a good "
    "year each tree gives 40 apples, so the orchard would give 180 times 40, which is 7200 apples. The frost "
    "destroyed one quarter of the blossoms, so only three quarters of the apples grow. Three quarters of 7200 is "
    "5400 apples. Next, the apples are packed in boxes of 25, so 5400 divided by 25 is 216 boxes. The family keeps "
    "3 boxes, which leaves 213 boxes to sell."
)


def _count_new(tokens: torch.Tensor, eos: set[int]) -> int:
    """Generated tokens per row up to and including the first EOS (what a user actually gets)."""
    total = 0
    for row in tokens.tolist():
        n = len(row)
        for i, t in enumerate(row):
            if t in eos:
                n = i + 1
                break
        total += n
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--naive-n", type=int, default=4)
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args()
    model = thoughtlens.load(dtype=args.dtype)
    prefix = model.apply_chat_template(PREFIX_PROBLEM) + REASONING
    ids = model.to_tokens(prefix)
    hf, tok = model.hf_model, model.tokenizer
    eos = {tok.eos_token_id}
    gen = dict(do_sample=True, temperature=0.6, top_p=0.95, max_new_tokens=args.new, pad_token_id=tok.eos_token_id)
    print(
        f"bench_rollouts: prefix {ids.shape[1]} tokens, N={args.n}, {args.new} new tokens, {args.dtype}, "
        f"torch threads {torch.get_num_threads()}"
    )

    # (c) thoughtlens
    sampler = HFSampler(model, batch_size=args.n)
    params = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=args.new, seed=0)
    t = time.perf_counter()
    comps = sampler.sample([SampleRequest(prefix, tuple(range(args.n)))], params)
    c_time = time.perf_counter() - t
    c_tokens = sum(c.n_tokens for c in comps)

    # (b) plain batched generate
    torch.manual_seed(0)
    batch = ids.expand(args.n, -1)
    t = time.perf_counter()
    with torch.no_grad():
        out = hf.generate(batch, attention_mask=torch.ones_like(batch), **gen)
    b_time = time.perf_counter() - t
    b_tokens = _count_new(out[:, ids.shape[1] :], eos)

    # (a) naive: one generate per rollout
    t = time.perf_counter()
    a_tokens = 0
    with torch.no_grad():
        for _ in range(args.naive_n):
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), **gen)
            a_tokens += _count_new(out[:, ids.shape[1] :], eos)
    a_time = time.perf_counter() - t

    rate = {"a": a_tokens / a_time, "b": b_tokens / b_time, "c": c_tokens / c_time}
    print(
        f"  (a) naive, one generate per rollout ({args.naive_n} rollouts): {a_tokens:5d} tokens in {a_time:6.1f} s "
        f"= {rate['a']:7.1f} tok/s"
    )
    print(
        f"  (b) batched generate ({args.n} rows):                {b_tokens:5d} tokens in {b_time:6.1f} s "
        f"= {rate['b']:7.1f} tok/s"
    )
    print(
        f"  (c) thoughtlens HFSampler ({args.n} rows):           {c_tokens:5d} tokens in {c_time:6.1f} s "
        f"= {rate['c']:7.1f} tok/s"
    )
    print(
        f"  (c)/(a) = {rate['c'] / rate['a']:.1f}x (target >= 8x);  "
        f"(c)/(b) = {rate['c'] / rate['b']:.2f}x (target >= 1.3x)"
    )


if __name__ == "__main__":
    main()
