"""The whole anchors pipeline (resampling -> attention -> categories -> page) on traces built to hit every
degenerate case of issue 10, plus one ordinary case: each ends with a page written, and the notes say what
was skipped and why. The same `run_pipeline` the CLI's `anchors run` and `demo` call is driven through the
CLI here, so the exit code is the one a user sees."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from thoughtlens.anchors.config import AnchorsConfig
from thoughtlens.pipeline.anchors import run_anchors
from thoughtlens.sample.base import Completion
from thoughtlens.sample.registry import register_sampler

# Traces with a boxed answer of 6; every rollout's answer is decided by the script below.
# Eight sentences: long enough for the paper's convergence filter (4 sentences in a row) to apply.
TRACE = (
    "We need to compute three plus five minus two. First, we add three and five to get eight. "
    "Then we subtract two, which gives six. Let me double check this result. Three plus five is eight. "
    "And eight minus two is six. That matches what we found. So the answer is \\boxed{6}."
)
ONE_SENTENCE = "So the answer is \\boxed{6}."
QUESTION = "What is 3 + 5 - 2?"


class ScriptedSampler:
    """Answers by rule: `answer_for(prefix, sample_index)` -> text of the rollout (None: no answer stated)."""

    name = "scripted"
    tokenizer = None

    def __init__(self, answer_for):
        self.answer_for = answer_for

    def sample(self, requests, params, on_completion=None):
        out = []
        for k, req in enumerate(requests):
            for j in req.sample_indices:
                ans = self.answer_for(req.prefix, j)
                if params.stop == ("}",):  # forced answer: the completion is the boxed content
                    text = "" if ans is None else f"{ans}"
                else:
                    text = (
                        "I am not sure yet." if ans is None else f" Next we finish. So the answer is \\boxed{{{ans}}}."
                    )
                c = Completion(k, j, text, 5, "stop")
                if on_completion:
                    on_completion(c)
                out.append(c)
        return out


def _after(prefix: str, marker: str) -> bool:
    return marker in prefix


CASES = {
    # ordinary: right only once "eight minus two" has been written, about half the time before
    "ordinary": (TRACE, lambda p, j: "6" if _after(p, "which gives six") or j % 2 else "7", True),
    "all_right": (TRACE, lambda p, j: "6", True),
    "all_wrong": (TRACE, lambda p, j: "3", True),
    "no_answers": (TRACE, lambda p, j: None, True),
    "one_sentence": (ONE_SENTENCE, lambda p, j: "6" if j % 2 else "5", True),
    "unlabelled": (TRACE, lambda p, j: "6" if j % 2 else "5", False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pipeline_writes_a_page_in_every_case(case, tiny_lm, tmp_path):
    trace, rule, label = CASES[case]
    trace_file = tmp_path / "trace.txt"
    trace_file.write_text(trace)
    events = []
    config = AnchorsConfig(n_rollouts=4, max_new_tokens=8, forced_max_new_tokens=4, label_categories=label)
    result = run_anchors(
        trace=trace_file,
        problem=QUESTION,
        answer="6",
        model=tiny_lm,
        sampler=ScriptedSampler(rule),
        store=tmp_path / "s.sqlite",
        config=config,
        attention=True,
        report=tmp_path / "page.html",
        on_progress=events.append,
    )
    page = (tmp_path / "page.html").read_text()
    assert result.page_path is not None and result.page_path.is_file()
    data = json.loads(re.search(r'id="tl-data">(.*?)</script>', page, re.S).group(1))
    assert len(data["sentences"]) == len(result.store.trace(result.run_id, "trace")["sentences"])
    notes = {e.note for e in events if e.note}
    if case == "ordinary":
        acc = result.metrics["accuracy"].dropna()
        assert acc.min() < acc.max(), "the ordinary case must show accuracy moving along the trace"
        assert data["category_table"], "the ordinary case fills the category table"
        assert any(abs(v) > 0.2 for v in result.metrics["resampling_importance_accuracy"].dropna())
    if case in ("all_right", "all_wrong"):
        assert any("every rollout is" in n for n in notes)
        assert "convergence filter dropped every sentence" in data["notes"]["category_table"]
    if case == "no_answers":
        assert any("no rollout stated an answer" in n for n in notes)
    if case == "one_sentence":
        assert "fewer than 3 sentences" in data["notes"]["suppression"]
    if case == "unlabelled":
        assert "no sentence carries a category label" in data["notes"]["category_table"]


def test_cli_exits_zero_and_names_the_page_in_a_degenerate_case(tiny_lm_dir, tmp_path):
    """Through `thoughtlens anchors run` (the demo's code path): every rollout wrong -> exit 0, page written."""
    register_sampler("scripted-wrong", lambda **_: ScriptedSampler(lambda p, j: "3"))
    trace_file = tmp_path / "trace.txt"
    trace_file.write_text(TRACE)
    from thoughtlens.cli import app

    res = CliRunner().invoke(
        app,
        [
            "anchors",
            "run",
            "--model",
            tiny_lm_dir,
            "--trace",
            str(trace_file),
            "--problem",
            QUESTION,
            "--answer",
            "6",
            "--backend",
            "scripted-wrong",
            "-n",
            "3",
            "--max-new-tokens",
            "8",
            "--attention",
            "--store",
            str(tmp_path / "s.sqlite"),
            "--report",
            str(tmp_path / "p.html"),
            "--dtype",
            "float32",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p.html").is_file()
    assert "every rollout is wrong" in res.output
