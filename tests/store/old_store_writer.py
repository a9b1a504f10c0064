"""Writes the small interrupted anchors store in tests/store/data/ (see test_store_old_store.py).

The committed file was written by thoughtlens 0.1.0 at commit a321cd5, before the configs shared one Sampling
base and before anchors/ was split into sub-packages:

    PYTHONPATH=<checkout of a321cd5> python tests/store/old_store_writer.py tests/store/data/interrupted_v0.sqlite
"""

from __future__ import annotations

import sys

PROMPT = "Question: what is 3 + 4?\nAnswer: "
TRACE = "First we add three and four. We must be careful with the sum. The total is seven. So the answer is \\boxed{7}."
STOP_AFTER = 5  # completions stored before the interruption


class Scripted:
    """Deterministic continuations: the answer depends on the prefix length and the sample index only."""

    name = "scripted"

    def __init__(self, stop_after: int | None = None):
        self.stop_after, self.calls = stop_after, 0

    def sample(self, requests, params, on_completion=None):
        from thoughtlens.sample.base import Completion

        out = []
        for p, req in enumerate(requests):
            for j in req.sample_indices:
                if self.stop_after is not None and self.calls >= self.stop_after:
                    raise KeyboardInterrupt
                self.calls += 1
                answer = 7 if (len(req.prefix) + j) % 3 else 8
                c = Completion(p, j, f" So the answer is \\boxed{{{answer}}}.", 6, "stop")
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


def config():
    from thoughtlens.anchors.config import AnchorsConfig

    return AnchorsConfig(n_rollouts=3, label_categories=False, counterfactual_matrix=False, forced=False)


def problem():
    from thoughtlens.anchors.config import Problem

    return Problem("p0", "What is 3 + 4?", PROMPT, "7", base_completion=TRACE)


def write(path: str, stop_after: int | None = STOP_AFTER) -> str:
    """Run the job into `path` until `stop_after` completions, then stop as Ctrl-C would; returns the run id."""
    from thoughtlens.anchors.importance.black_box import AnchorsRun
    from thoughtlens.store.run_store import RunStore

    with RunStore(path) as store:
        job = AnchorsRun(Scripted(stop_after), store, config())
        try:
            job.run([problem()])
        except KeyboardInterrupt:
            pass
        return job.run_id


if __name__ == "__main__":
    print(write(sys.argv[1]))
