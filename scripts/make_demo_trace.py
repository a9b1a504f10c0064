"""Write thoughtlens/pipeline/demo_trace.json: the bundled model's own greedy trace for the demo problem.

The demo analyses this committed trace instead of generating one on the spot, because greedy decoding in
bf16 is not identical across CPUs (issue 10: a 9-sentence trace on one machine, 7 on another). Written in
float32 once, the trace is the model's own text and every machine analyses the same sentences; only the
rollouts (sampled, seeded) run on the user's machine.

    .venv/bin/python scripts/make_demo_trace.py            # rewrite the trace
    .venv/bin/python scripts/make_demo_trace.py --check 16 # also: accuracy of 16 rollouts from the empty prefix
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import thoughtlens
from thoughtlens.anchors.importance.black_box import answer_complete
from thoughtlens.pipeline.demo import DEMO_ANSWER, DEMO_PROBLEM, DEMO_STYLE, DEMO_TRACE_FILE
from thoughtlens.sample.base import SampleRequest, SamplingParams
from thoughtlens.sample.hf import HFSampler
from thoughtlens.trace.answers import answers_equivalent, extract_answer
from thoughtlens.trace.prompts import build_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--check", type=int, default=0, help="rollouts from the empty prefix to report accuracy (0: skip)")
    args = ap.parse_args()
    model = thoughtlens.load(dtype=torch.float32)
    prompt = build_prompt(model.tokenizer, DEMO_PROBLEM)
    sampler = HFSampler(model, batch_size=16, answer_done=answer_complete)
    (base,) = sampler.sample([SampleRequest(prompt, (0,))], SamplingParams(0.0, 1.0, args.max_new_tokens, seed=0))
    answer = extract_answer(base.text, DEMO_STYLE)
    record = {
        "problem": DEMO_PROBLEM,
        "gt_answer": DEMO_ANSWER,
        "completion": base.text,
        "answer": answer,
        "made_by": "scripts/make_demo_trace.py",
        "dtype": "float32",
        "decoding": "greedy",
        "max_new_tokens": args.max_new_tokens,
    }
    Path(DEMO_TRACE_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {DEMO_TRACE_FILE}: answer {answer!r} (ground truth {DEMO_ANSWER})\n{base.text}")
    for dtype in (torch.float32, torch.bfloat16) if args.check else ():
        m = thoughtlens.load(dtype=dtype)
        t0 = time.perf_counter()
        outs = HFSampler(m, batch_size=16, answer_done=answer_complete).sample(
            [SampleRequest(prompt, tuple(range(args.check)))], SamplingParams(0.6, 0.95, 128, seed=0)
        )
        right = sum(
            bool(a) and answers_equivalent(a, DEMO_ANSWER) for a in (extract_answer(o.text, DEMO_STYLE) for o in outs)
        )
        print(f"{dtype}: accuracy from the empty prefix {right}/{args.check} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
