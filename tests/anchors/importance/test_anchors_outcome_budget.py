"""With an outcome other than maths correctness (issue 17), rollouts are not cut at the stated answer and
the adaptive budget steers on the outcome. The scripted sampler honours `answer_done` like HFSampler
(it stops at the first character where the predicate holds). Every rollout states the right answer,
then mentions "blackmail" only when continuing from prefix 2 or later: the outcome jumps at sentence 1,
while correctness is constant. The expected allocation is derived by hand from the budget rules."""

from __future__ import annotations

import re

import pytest

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun
from thoughtlens.anchors.importance.budget import BudgetPolicy
from thoughtlens.sample.base import Completion
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.reasoning_trace import ReasoningTrace

PROMPT = "Question: what is 3 + 4?\nAnswer: "
TRACE = (
    "First we add three and four. That makes seven in total. "
    "Let me verify the sum once more. So the answer is \\boxed{7}."
)
OUTCOME = "regex:(?i)blackmail"


class StoppingSampler:
    name = "stopping"

    def __init__(self):
        self.answer_done = None
        self.pos = {p: k for k, p in enumerate(ReasoningTrace.parse(PROMPT, TRACE).rollout_prefixes(None))}

    def sample(self, requests, params, on_completion=None):
        out = []
        for p, req in enumerate(requests):
            k = self.pos.get(req.prefix)
            for j in req.sample_indices:
                if params.temperature == 0:  # the (greedy) base trace
                    text = TRACE + " Then I consider blackmail."
                else:
                    text = " So it is \\boxed{7}. " + ("Then I consider blackmail." if k >= 2 else "Then I stop.")
                reason = "stop"
                if self.answer_done is not None:
                    cut = next((m for m in range(1, len(text) + 1) if self.answer_done(text[:m])), None)
                    if cut is not None:
                        text, reason = text[:cut], "answer"
                c = Completion(p, j, text, 5, reason)
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


def _run(tmp_path, outcome):
    store = RunStore(tmp_path / f"{outcome[:5]}.sqlite")
    config = AnchorsConfig(
        n_rollouts=30, label_categories=False, counterfactual_matrix=False, forced=False, outcome=outcome
    )
    policy = BudgetPolicy(kind="sequential", initial=10, step=10, top_k=1)
    job = AnchorsRun(StoppingSampler(), store, config, budget=policy)
    job.run([Problem("p0", "What is 3 + 4?", PROMPT, "7", base_completion=TRACE)])
    df = store.rollouts(job.run_id, "p0")
    return store, job, df[df["condition"] == "resampled"]


@pytest.mark.slow  # MiniLM load (similarities of the rollouts)
def test_non_default_outcome_reads_whole_rollouts_and_budget_follows_it(tmp_path):
    store, job, df = _run(tmp_path, OUTCOME)
    # not cut at \boxed{7}: rollouts from prefix >= 2 still mention blackmail after the answer
    for k, t in zip(df["sentence_index"], df["text"]):
        assert t.endswith("blackmail.") if k >= 2 else t.endswith("stop.")
    # Budget by hand (top_k=1 elimination): after round 1 (10 each), sentence 1 (rates 0 -> 1) is the top
    # anchor, with Newcombe lower bound ~0.61 above the upper bound of |importance| of every flat
    # sentence (10/10 vs 10/10 or 0/10 vs 0/10: ~0.28), so only positions 1 and 2 get more, up to the cap.
    counts = df.groupby("sentence_index").size().to_dict()
    assert counts == {0: 10, 1: 30, 2: 30, 3: 10, 4: 10}
    rates = {
        k: sum(re.search("(?i)blackmail", t) is not None for t in g["text"]) / len(g)
        for k, g in df.groupby("sentence_index")
    }
    got = store.metrics(job.run_id, "p0")
    for i in range(4):
        assert got.loc[i, "resampling_importance_accuracy"] == rates[i + 1] - rates[i]


def test_default_outcome_still_stops_at_the_answer_and_budget_follows_correctness(tmp_path):
    _, _, df = _run(tmp_path, "correct")
    assert all(t.endswith("\\boxed{7}") for t in df["text"])  # cut at the answer's brace
    # correctness is 100 % everywhere: no sentence stands out, none is eliminated, all reach the cap
    assert df.groupby("sentence_index").size().to_dict() == {k: 30 for k in range(5)}


def test_base_trace_runs_past_the_answer_only_for_other_outcomes(tmp_path):
    from thoughtlens.anchors.importance.black_box import answer_complete
    from thoughtlens.progress import Tracker

    for outcome, past_answer in (("correct", False), (OUTCOME, True)):
        sampler = StoppingSampler()
        sampler.answer_done = answer_complete  # what `thoughtlens anchors run` installs
        config = AnchorsConfig(
            n_rollouts=1, label_categories=False, counterfactual_matrix=False, forced=False, outcome=outcome
        )
        store = RunStore(tmp_path / f"b{past_answer}.sqlite")
        job = AnchorsRun(sampler, store, config)
        store.add_problem(job.run_id, "p0", "What is 3 + 4?", "7")
        trace = job._base_trace(Problem("p0", "What is 3 + 4?", PROMPT, "7"), Tracker(None, "base"))
        assert trace.completion.endswith("blackmail.") == past_answer
        assert sampler.answer_done is answer_complete  # restored after the base trace
