"""Transplant (issue 17, faithfulness): a hinted CoT cut before sentence k, placed after the unhinted
prompt; the hinted-answer rate per k equals #cue / (#correct + #cue + #other) counted by hand from the
stored rollouts, with a Wilson interval re-derived here; converged positions copy counts; resumable."""

from __future__ import annotations

import math

import pytest

from thoughtlens.anchors.branches.transplant import (
    CONDITION,
    HintedProblem,
    TransplantConfig,
    load_hinted_problems,
    read_letter,
    run_transplant,
)
from thoughtlens.errors import DataError
from thoughtlens.sample.base import Completion
from thoughtlens.store.run_store import RunStore

COT = (
    "The professor suggests D here. Let me add seventeen and twenty five. That gives forty two, which is B. "
    "But the professor said D, so I will trust the professor. I am done thinking about it now. "
)


class HintFollower:
    """Hinted prompt -> writes COT. Unhinted: answers D once 'trust the professor' is in the prompt, D on odd
    samples once 'professor suggests' is, else B (C on every 5th sample, no answer on j % 7 == 3)."""

    name = "hint-follower"

    def __init__(self):
        self.requests = []

    def sample(self, requests, params, on_completion=None):
        out = []
        for p, req in enumerate(requests):
            self.requests.append(req)
            for j in req.sample_indices:
                if "Stanford professor" in req.prefix:
                    text = COT + "</think>\nTherefore, the best answer is: (D)."
                elif j % 7 == 3:
                    text = " I am not sure."
                elif "trust the professor" in req.prefix:
                    text = " Therefore, the best answer is: (D)."
                elif "professor suggests" in req.prefix and j % 2:
                    text = " So the answer is: D"
                else:
                    text = " Therefore, the best answer is: (C)." if j % 5 == 0 else " \\boxed{B}"
                c = Completion(p, j, text, 4, "stop")
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


def _wilson(k, n, z=1.959964):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_transplant_curve_equals_hand_counts_and_resumes(tmp_path):
    problem = load_hinted_problems()[0]
    assert problem.gt_answer == "B" and problem.cue_answer == "D"
    store = RunStore(tmp_path / "t.sqlite")
    sampler = HintFollower()
    cfg = TransplantConfig(n_rollouts=8, max_new_tokens=16, cot_max_new_tokens=64)
    curve = run_transplant(sampler, store, [problem], cfg)[problem.id]
    (run,) = store.runs()
    df = store.rollouts(run["run_id"], problem.id)
    assert store.get_artifact(run["run_id"], "hinted_cot", problem.id) == COT
    assert len(curve) == 6  # five sentences + the whole CoT
    sampled = [row for row in curve if not row["copied"]]
    for row in sampled:
        texts = df[(df["condition"] == CONDITION) & (df["sentence_index"] == row["k"])]["text"]
        letters = [
            t.split("(")[-1][0] if "(" in t else ("D" if t.endswith("D") else "B" if "{B}" in t else None)
            for t in texts
        ]
        cue, right = letters.count("D"), letters.count("B")
        other = sum(1 for x in letters if x in ("A", "C"))
        assert (row["n_cue"], row["n_correct"], row["n_other"]) == (cue, right, other)
        assert row["rate"] == pytest.approx(cue / (cue + right + other))
        lo, hi = _wilson(cue, cue + right + other)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    rates = [row["rate"] for row in curve]
    assert rates[0] < rates[1] <= rates[3] < rates[4]  # the hint's answer grows as more of the hinted CoT is kept
    # converged at k=4 ('trust the professor' kept: 7 of 8 say D >= int(8 * 0.98999) = 7): k=5 copied, not sampled
    assert not curve[4]["copied"] and curve[5]["copied"] and curve[5]["n_cue"] == curve[4]["n_cue"] == 7
    assert not (df["sentence_index"] == 5).any()
    # every unhinted prompt starts with the unhinted question and never contains the hint
    assert all("Stanford" not in r.prefix for r in sampler.requests[1:])
    n_calls = len(sampler.requests)
    again = run_transplant(sampler, store, [problem], cfg)[problem.id]
    assert len(sampler.requests) == n_calls and again == curve


def test_transplant_bad_input():
    assert read_letter("so... Therefore, the best answer is: (c)") == "C" and read_letter("none") is None
    with pytest.raises(DataError, match="wrong answer"):
        HintedProblem("x", "q?", {"A": "1", "B": "2"}, "A", "A", "hint")
    with pytest.raises(DataError, match="not a hinted problem set"):
        load_hinted_problems(__file__)


@pytest.mark.slow  # CLI import ~7 s
def test_transplant_cli_prints_the_curve(tmp_path):
    from typer.testing import CliRunner

    from thoughtlens.cli import app
    from thoughtlens.sample.registry import register_sampler

    register_sampler("hint-follower-test", lambda **kw: HintFollower())
    args = [
        "branches",
        "transplant",
        "--backend",
        "hint-follower-test",
        "--store",
        str(tmp_path / "t.sqlite"),
        "--limit",
        "1",
        "--rollouts",
        "8",
    ]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "hint-arith" in res.output and "hinted-answer rate" in res.output and "(copied)" in res.output
    res = CliRunner().invoke(app, args[:-1] + ["0"])
    assert res.exit_code == 1 and "error:" in res.output and "n_rollouts" in res.output
