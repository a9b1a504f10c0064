"""The problems of issue 18 P6 (a)'s full-budget ground truth, derived in place from ../shared/data/gsm8k
(the data is read where it lies, never copied into the repo).

Each problem's base trace is its GSM8K reference solution, one sentence per line, with the <<calc>> annotations
and the final '#### N' removed (a period added where a line has no end mark): the bundled model's own samples were
0 % correct on every screened problem, so traces of its own would have all-zero importance (docs/benchmarks.md,
"Adaptive rollout budgets ... Replay"). Selection: 167, 595, 387 (the screened problems with the longest
reference solutions) and 825 (the shortest reference solution with >= 8 lines).

    python benchmarks/replay_problems.py ID FIELD      # FIELD: question | gt_answer | trace
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

GSM8K = Path(__file__).resolve().parents[2] / "shared/data/gsm8k/test.jsonl"
IDS = ("gsm8k-test-167", "gsm8k-test-595", "gsm8k-test-387", "gsm8k-test-825")


def problem(problem_id: str) -> dict[str, str]:
    """{"id", "question", "gt_answer", "trace"} of a GSM8K test problem "gsm8k-test-<line index>"."""
    index = int(problem_id.rsplit("-", 1)[-1])
    with open(GSM8K) as f:
        row = json.loads(next(line for i, line in enumerate(f) if i == index))
    body, gt = row["answer"].split("####")
    lines = [re.sub(r"<<[^>]*>>", "", x).strip() for x in body.strip().split("\n") if x.strip()]
    lines = [x if x.endswith((".", "?", "!")) else x + "." for x in lines]
    return {"id": problem_id, "question": row["question"], "gt_answer": gt.strip(), "trace": "\n".join(lines)}


if __name__ == "__main__":
    if len(sys.argv) == 1:
        print(" ".join(IDS))
    else:
        print(problem(sys.argv[1])[sys.argv[2]])
