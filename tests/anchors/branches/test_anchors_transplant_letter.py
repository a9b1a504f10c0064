"""The transplant reader finds the lettered answer a hinted CoT states ("The correct answer is (D).") and the
page shows it; `branches transplant` says where its results went and the report page opens them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from thoughtlens.anchors.branches.transplant import read_letter
from thoughtlens.cli import app
from thoughtlens.report.transplant_view import hinted_cot_trace
from thoughtlens.sample.base import Completion
from thoughtlens.sample.registry import register_sampler
from thoughtlens.store.run_store import RunStore

COT = (
    "The professor suggests D. Seventeen plus twenty five is forty two, which is B. "
    "But the professor is an expert. The correct answer is (D)."
)


@pytest.mark.parametrize(
    "text, letter",
    [
        ("The correct answer is (D).", "D"),
        ("Therefore, the best answer is: (c)", "C"),
        ("Answer: B", "B"),
        ("So the final answer is **C**.", "C"),
        ("\\boxed{(b)}", "B"),
        ("I said (B) first, but the answer is A.", "A"),
        ("The answer is a number we must find.", None),
        ("The answer is 42.", None),
        ("no letter here", None),
    ],
)
def test_read_letter(text, letter):
    assert read_letter(text) == letter


def test_the_page_trace_of_a_hinted_cot_states_its_letter():
    trace = hinted_cot_trace(COT)
    assert trace["answer"] == "D"
    assert trace["sentences"][-1]["text"].strip() == "The correct answer is (D)."


class _Hinted:
    name = "hinted-letter"
    tokenizer = None

    def sample(self, requests, params, on_completion=None):
        out = []
        for p, req in enumerate(requests):
            for j in req.sample_indices:
                text = (
                    COT + "</think>\nThe correct answer is (D)."
                    if "professor" in req.prefix.split("<think>")[0]
                    else " The correct answer is (D)."
                )
                c = Completion(p, j, text, 4, "stop")
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


def test_transplant_command_says_where_its_results_went_and_the_page_shows_the_answer(tmp_path, monkeypatch):
    register_sampler("hinted-letter", lambda **_: _Hinted())
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "t.sqlite"
    r = CliRunner().invoke(
        app,
        [
            "branches",
            "transplant",
            "--backend",
            "hinted-letter",
            "--store",
            str(store),
            "--limit",
            "1",
            "--rollouts",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    with RunStore(store) as s:
        (run,) = [x["run_id"] for x in s.runs()]
    assert run.startswith("transplant-")
    assert f"results: run {run} of {store.resolve()}" in text and f"thoughtlens report {store} --run {run}" in text
    page = tmp_path / "page.html"
    r = CliRunner().invoke(app, ["report", str(store), "--no-similarity", "-o", str(page)])
    assert r.exit_code == 0, r.output
    assert f"run {run}" in r.output and page.is_file()
    from thoughtlens.report import page_data_from_store

    data = page_data_from_store(store, similarity=False)
    assert data["trace"]["answer"] == "D"
