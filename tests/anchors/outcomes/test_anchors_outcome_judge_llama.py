"""An LLM judge served by the real llama.cpp server the tests start (issue 17, must show): the bundled
SmolLM2 judges "does the transcript mention seven?" for every stored rollout of an anchors run. Whatever
it replies (a 135M model also replies garbage), the metrics must equal a hand computation from the
stored rollouts and the judge's recorded replies: the first yes/no among a text's replies is its value,
no yes/no in `attempts` replies is unknown (left out of the rate). Garbage replies and their retries are
tested against a scripted server in test_anchors_outcome_judge.py."""

from __future__ import annotations

import re

import pytest
from test_anchors_outcomes import PROMPT, TRACE, PlantedSampler, _rate

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun
from thoughtlens.anchors.outcomes.judge import JudgeOutcome

_TAG = re.compile(r"<answer>\s*(yes|no)\s*</answer>", re.IGNORECASE)


def _verdict(reply: str):
    """Written out here: the tagged answer when all tags agree, else a leading yes / no, else None."""
    tags = {t.lower() for t in _TAG.findall(reply)}
    if tags:
        return tags == {"yes"} if len(tags) == 1 else None
    m = re.match(r"^\W*(yes|no)\b", reply, re.IGNORECASE)
    return None if m is None else m.group(1).lower() == "yes"


@pytest.mark.server
@pytest.mark.slow  # llama.cpp server start + ~20 judge calls + MiniLM
def test_judge_on_real_llama_cpp_server_metrics_equal_hand_computation(llama_server, tmp_path):
    from thoughtlens.sample.openai import OpenAIClient
    from thoughtlens.store.run_store import RunStore

    client = OpenAIClient(llama_server, timeout=120, max_retries=1)
    replies: dict[str, list[str]] = {}

    class Recording:  # what the judge was asked and what it answered, per transcript
        base_url = client.base_url

        @property
        def model(self):
            return client.model

        def check(self):
            client.check()

        def chat(self, messages, **params):
            reply = client.chat(messages, **params)
            transcript = messages[0]["content"].split("<<<\n", 1)[1].rsplit("\n>>>", 1)[0]
            replies.setdefault(transcript, []).append(reply)
            return reply

    # A 135M chat model rarely starts its reply with yes / no; llama.cpp's grammar field (passed through as a
    # request parameter) constrains it to the tagged format, so the values are real and the rates informative.
    judge = JudgeOutcome(
        "mentions_seven",
        "Does the transcript mention the number seven?",
        Recording(),
        attempts=2,
        grammar='root ::= "<answer>" ("yes" | "no") "</answer>"',
    )
    store = RunStore(tmp_path / "s.sqlite")
    config = AnchorsConfig(
        n_rollouts=1, label_categories=False, counterfactual_matrix=False, forced=False, outcome=judge.spec
    )
    job = AnchorsRun(PlantedSampler(), store, config, outcome=judge.outcome())
    job.run([Problem("p0", "What is 3 + 4?", PROMPT, "7", base_completion=TRACE)])

    definition = store.get_artifact(job.run_id, "outcome_definition")
    assert definition["base_url"] == client.base_url and definition["model"] == client.model
    assert definition["question"] == judge.question
    df = store.rollouts(job.run_id)
    res = df[df["condition"] == "resampled"]

    def value(text):
        asked = replies[text]
        verdicts = [_verdict(r) for r in asked]
        known = [v for v in verdicts if v is not None]
        assert len(asked) == (verdicts.index(known[0]) + 1 if known else 2)  # retried only after garbage
        return known[0] if known else None

    got = store.metrics(job.run_id, "p0")
    n_unknown = 0
    for i in range(len(got)):
        vals = [value(t) for t in res[res["sentence_index"] == i]["text"]]
        n_unknown += sum(v is None for v in vals)
        nxt = [value(t) for t in res[res["sentence_index"] == i + 1]["text"]]
        assert got.loc[i, "accuracy"] == pytest.approx(_rate(vals), abs=1e-12)
        assert got.loc[i, "n_outcome_unknown"] == sum(v is None for v in vals)
        if i + 1 < len(got):
            assert got.loc[i, "resampling_importance_accuracy"] == pytest.approx(_rate(nxt) - _rate(vals), abs=1e-12)
    summary = store.get_artifact(job.run_id, "outcome_summary", "p0")
    assert summary["n_unknown"] == n_unknown + sum(
        value(t) is None for t in res[res["sentence_index"] == len(got)]["text"]
    )
    assert any(v is not None for v in map(value, res["text"]))  # the grammar makes the 135M model answer
