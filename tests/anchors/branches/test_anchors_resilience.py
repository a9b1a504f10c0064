"""Resilience ("fighting back") and counterfactual++ on a planted case (issue 17): the scripted model
always writes sentence A again after it is removed (high resilience) and never writes sentence B again
(low), and CF++ equals rate(R_{i+1}) - rate(last iteration) computed by hand from the stored rollouts."""

from __future__ import annotations

import re

import pytest

from thoughtlens.anchors.branches.resilience import CONDITION, ResilienceConfig, measure_resilience, resilience_run_id
from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun
from thoughtlens.errors import ConfigError
from thoughtlens.sample.base import Completion
from thoughtlens.store.run_store import RunStore

PROMPT = "Question: what is 3 + 4?\nAnswer: "
A = "We must be very careful with carrying digits."
B = "The total is seven."
TRACE = f"First we add three and four together. {A} {B} So the answer is \\boxed{{7}}."
OUTCOME = "regex:zebra"


class Planted:
    """Without A in the prefix the model restarts and writes A again; the zebra (the outcome) appears
    always once B is in the prefix, else on odd sample indices."""

    name = "planted"

    def __init__(self):
        self.calls = 0

    def sample(self, requests, params, on_completion=None):
        out = []
        for p, req in enumerate(requests):
            for j in req.sample_indices:
                self.calls += 1
                tail = " A zebra appears." if (B in req.prefix or j % 2) else " No animals here."
                text = tail if A in req.prefix else f" Let me restart the sum now. {A}{tail}"
                c = Completion(p, j, text, 5, "stop")
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


@pytest.mark.slow  # anchors run + MiniLM (~3 s warm, ~30 s cold)
def test_resilience_high_for_regenerated_low_for_abandoned_and_cf_plus_plus_by_hand(tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    sampler = Planted()
    job = AnchorsRun(
        sampler,
        store,
        AnchorsConfig(
            n_rollouts=4,
            label_categories=False,
            counterfactual_matrix=False,
            forced=False,
            outcome=OUTCOME,
            similarity_threshold=0.8,
        ),
    )
    job.run([Problem("p0", "What is 3 + 4?", PROMPT, "7", base_completion=TRACE)])
    cfg = ResilienceConfig(n_trials=4, max_iterations=3, similarity_threshold=0.8, outcome=OUTCOME)

    res_a = measure_resilience(sampler, store, job.run_id, "p0", 1, cfg)
    res_b = measure_resilience(sampler, store, job.run_id, "p0", 2, cfg)
    assert res_a.sentence == A and res_b.sentence == B
    assert res_a.iterations == [3] * 4 and res_a.persisted == [True] * 4 and res_a.resilience == 3.0
    assert res_b.iterations == [0] * 4 and res_b.persisted == [False] * 4 and res_b.resilience == 0.0

    df = store.rollouts(job.run_id, "p0")
    rr = store.rollouts(resilience_run_id(job.run_id, "p0", cfg), "p0")
    for res, i in ((res_a, 1), (res_b, 2)):
        kept = df[(df["condition"] == "resampled") & (df["sentence_index"] == i + 1)]["text"]
        kept_rate = sum(bool(re.search("zebra", t)) for t in kept) / len(kept)
        mine = rr[(rr["condition"] == CONDITION) & (rr["sentence_index"] == i)]
        last = mine.assign(trial=mine["sample_index"] // 3).sort_values("sample_index").groupby("trial").tail(1)
        final_rate = sum(bool(re.search("zebra", t)) for t in last["text"]) / len(last)
        assert res.kept_rate == pytest.approx(kept_rate) and res.final_rate == pytest.approx(final_rate)
        assert res.counterfactual_plusplus == pytest.approx(kept_rate - final_rate)
    assert res_b.counterfactual_plusplus == pytest.approx(0.5)  # kept: zebra always; gone: half the time

    calls = sampler.calls  # resume: everything is in the store, nothing is sampled again
    again = measure_resilience(sampler, store, job.run_id, "p0", 1, cfg)
    assert sampler.calls == calls and again.iterations == res_a.iterations


def test_resilience_bad_input(tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    with pytest.raises(Exception, match="no run"):
        measure_resilience(Planted(), store, "anchors-nope", "p0", 0)
    with pytest.raises(ConfigError, match="max_iterations"):
        ResilienceConfig(max_iterations=0)
