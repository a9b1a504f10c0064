"""Build the project's two model-diffing pairs from the bundled SmolLM2-135M-Instruct (CPU, seeded, cached).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/make_diff_models.py                 # both (<= 15 min on 2 cores)
    OMP_NUM_THREADS=2 .venv/bin/python scripts/make_diff_models.py --only planted
    .venv/bin/python scripts/make_diff_models.py --write-data                      # rewrite diff/data/planted.jsonl
                                                                                   # (the base answers: ~1 min)

Each model lands in `cache_dir()/diff_models/<name>-<hash of recipe + data>` (thoughtlens.diff.models); a
second run finds it and does nothing. An interrupted build resumes from its last checkpoint. The recipes
(steps, batch, sequence length, lr, trainable layers) are `PLANTED` and `THINKING` in thoughtlens/diff/models.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from thoughtlens.diff import datasets, models
from thoughtlens.progress import line_printer


def base_answers(max_new_tokens: int = 48) -> dict[str, str]:
    """The bundled model's own greedy replies (fp32) to the planted dataset's unrelated questions, cut after their
    last complete sentence: the context around each planted sentence, not learned (`train_spans`). Greedy
    decoding can differ across CPUs, so the replies are written into planted.jsonl once and the build reads
    that file."""
    import re

    import torch

    import thoughtlens

    model = thoughtlens.load(models.base_dir(), dtype=torch.float32)
    questions = datasets.unrelated_questions()
    out = {}
    for i in range(0, len(questions), 8):
        chunk = questions[i : i + 8]
        replies = model.generate([model.apply_chat_template(q) for q in chunk], max_new_tokens=max_new_tokens)
        for q, r in zip(chunk, replies):
            # Not represent.refusal.trim_to_sentence: that one also ends a sentence at a line break, which cuts 2
            # of these 48 replies elsewhere (after "... to get you started:"); the committed data used this rule.
            ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", r)]
            out[q] = " ".join((r[: ends[-1]] if ends else r).split())
        print(f"base answers: {len(out)}/{len(questions)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(models.CONFIGS), help="build one pair only")
    ap.add_argument("--write-data", action="store_true", help="rewrite thoughtlens/diff/data/planted.jsonl and stop")
    args = ap.parse_args()
    if args.write_data:
        rows = datasets.planted_examples(base_answers(), seed=0)
        datasets.PLANTED_FILE.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {len(rows)} rows to {datasets.PLANTED_FILE}")
        return
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average {os.getloadavg()}")
    for name in [args.only] if args.only else list(models.CONFIGS):
        t0 = time.perf_counter()
        base, out = models.build(models.CONFIGS[name], on_progress=line_printer())
        print(f"{name}: {out} ({time.perf_counter() - t0:.0f} s, load average {os.getloadavg()})", flush=True)


if __name__ == "__main__":
    main()
