"""`thoughtlens demo` / `make demo`: the thought-anchors pipeline on the bundled model, on one small problem.

What the demo analyses is fixed: the bundled model's own greedy float32 trace of the problem below, committed
in `demo_trace.json` (written by `scripts/make_demo_trace.py`). Greedy decoding in bf16 differs across CPUs,
so a trace generated on the spot would differ from machine to machine (issue 10); the committed one gives
every machine the same sentences. The rollouts are sampled on the user's machine (seeded), so the numbers
vary a little between CPUs; the problem was chosen so that the model is right in some rollouts and wrong in
others from the start of the trace (see README for the measured range), which makes importance visible.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.trace.prompts import build_prompt

DEMO_TRACE_FILE = Path(__file__).with_name("demo_trace.json")
DEMO_PROBLEM = "Tom has 3 apples and buys 5 more. How many apples does he have now?"
DEMO_ANSWER = "8"
DEMO_STYLE = "last_number"  # a 135M model rarely writes \boxed{}; its answer is the last number it states
DEMO_CONFIG = AnchorsConfig(n_rollouts=8, max_new_tokens=96, answer_style=DEMO_STYLE)


@cache
def demo_record() -> dict:
    return json.loads(DEMO_TRACE_FILE.read_text(encoding="utf-8"))


def demo_problems(tokenizer) -> list[Problem]:
    """The demo's one problem, with the committed base trace (the prompt is built with the model's template)."""
    rec = demo_record()
    return [
        Problem(
            "demo",
            rec["problem"],
            build_prompt(tokenizer, rec["problem"]),
            rec["gt_answer"],
            base_completion=rec["completion"],
        )
    ]


def demo_config(rollouts: int | None = None, max_new_tokens: int | None = None) -> AnchorsConfig:
    """The demo's settings, with the budget optionally changed."""
    cfg = DEMO_CONFIG
    if rollouts is not None:
        cfg = replace(cfg, n_rollouts=rollouts)
    if max_new_tokens is not None:
        cfg = replace(cfg, max_new_tokens=max_new_tokens, base_max_new_tokens=max(2 * max_new_tokens, 256))
    return cfg
