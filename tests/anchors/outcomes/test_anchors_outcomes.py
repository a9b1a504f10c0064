"""Any outcome (issue 17): the anchors job measures importance of a regex match or a labeller category
instead of maths correctness, and its metrics equal a hand computation from the stored rollouts
(Thought Branches' analyze_rollouts.py formulas, re-derived below in plain Python)."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest

from thoughtlens.anchors.config import AnchorsConfig, Problem, config_record
from thoughtlens.anchors.importance.black_box import AnchorsRun
from thoughtlens.anchors.outcomes.spec import outcome_label, register_outcome, resolve_outcome, unregister_outcome
from thoughtlens.errors import ConfigError
from thoughtlens.sample.base import Completion
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.label_rules import rule_label
from thoughtlens.trace.reasoning_trace import ReasoningTrace

PROMPT = "Question: what is 3 + 4?\nAnswer: "
TRACE = (
    "First we add three and four together. That makes seven in total, clearly. "
    "Let me verify the sum once more. So the answer is \\boxed{7}."
)
OTHER = "Bananas are a yellow tropical fruit."  # a first sentence unlike every trace sentence


def _trace() -> ReasoningTrace:
    return ReasoningTrace.parse(PROMPT, TRACE)


class PlantedSampler:
    """Rollout j from prefix k: first sentence = a copy of S_k (even j) or OTHER (odd j); whether it
    mentions "seven" and whether it checks its work depend on k and j, so rates differ by position."""

    name = "planted"

    def __init__(self):
        tr = _trace()
        self.pos = {p: k for k, p in enumerate(tr.rollout_prefixes(None))}
        self.sentences = [s.text for s in tr.sentences]

    def text(self, k: int, j: int) -> str:
        first = self.sentences[k] if (j % 2 == 0 and k < len(self.sentences)) else OTHER
        seven = "seven" if (k >= 2 or j in (0, 3) and k == 1 or j == 0) else "a number"
        check = " Let me double check this." if (j + k) % 3 == 0 else ""
        return f" {first} It is {seven}.{check} Done."

    def sample(self, requests, params, on_completion=None):
        out = []
        for p, req in enumerate(requests):
            for j in req.sample_indices:
                if req.prefix.endswith("\\boxed{"):
                    text = "7}" if j % 2 else "seven}"
                else:
                    text = self.text(self.pos[req.prefix], j)
                c = Completion(p, j, text, 5, "stop")
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


def _run(tmp_path, outcome, n=4, forced=True, name="s.sqlite", **kw):
    store = RunStore(tmp_path / name)
    config = AnchorsConfig(
        n_rollouts=n, label_categories=False, counterfactual_matrix=False, forced=forced, outcome=outcome
    )
    job = AnchorsRun(PlantedSampler(), store, config, **kw)
    job.run([Problem("p0", "What is 3 + 4?", PROMPT, "7", base_completion=TRACE)])
    return store, job


# ---- the paper's formulas, re-derived (thought-branches/whistleblowling/analyze_rollouts.py) ----------


def _rate(vals):
    known = [v for v in vals if v is not None]
    return sum(known) / len(known) if known else 0.0


def _kl(a, b, alpha=1e-9):  # calculate_kl_divergence, use_prob_true=False: over yes/no labels
    ca, cb = (
        Counter("yes" if v else "no" for v in a if v is not None),
        Counter("yes" if v else "no" for v in b if v is not None),
    )
    if not ca or not cb:
        return 0.0
    labels = set(ca) | set(cb)
    na, nb = sum(ca.values()) + alpha * len(labels), sum(cb.values()) + alpha * len(labels)
    return max(
        0.0, sum((ca[x] + alpha) / na * math.log(((ca[x] + alpha) / na) / ((cb[x] + alpha) / nb)) for x in labels)
    )


def _logit(vals, eps=1e-8):
    known = [v for v in vals if v is not None]
    p = (sum(known) + eps) / (len(known) + 2 * eps)
    return math.log(p / (1 - p))


def _hand(store, run_id, grade, n_sent, sentences):
    df = store.rollouts(run_id)
    rows = []
    by = lambda cond, k: df[(df["condition"] == cond) & (df["sentence_index"] == k)]  # noqa: E731
    for i in range(n_sent):
        r_i = [(grade(t), t) for t in by("resampled", i)["text"]]
        r_next = [grade(t) for t in by("resampled", i + 1)["text"]]
        f_i = [grade(t) for t in by("forced", i)["text"]]
        f_next = [grade(t) for t in by("forced", i + 1)["text"]]
        vals = [v for v, _ in r_i]
        # planted: a rollout is "similar" iff its first sentence is a copy of S_i
        dissimilar = [v for v, t in r_i if not t.strip().startswith(sentences[i])]
        similar = [v for v, t in r_i if t.strip().startswith(sentences[i])]
        last = i == n_sent - 1
        row = {"accuracy": _rate(vals)}
        row["resampling_importance_accuracy"] = 0.0 if last else _rate(r_next) - _rate(vals)
        row["resampling_importance_kl"] = 0.0 if last else _kl(vals, r_next)
        row["resampling_importance_logodds"] = 0.0 if last else _logit(r_next) - _logit(vals)
        cf = not last and dissimilar
        row["counterfactual_importance_accuracy"] = _rate(dissimilar) - _rate(r_next) if cf else 0.0
        row["counterfactual_importance_kl"] = _kl(dissimilar, r_next + similar) if cf else 0.0
        row["counterfactual_importance_logodds"] = _logit(dissimilar) - _logit(r_next) if cf else 0.0
        row["forced_importance_accuracy"] = 0.0 if last else _rate(f_next) - _rate(f_i)
        row["forced_importance_kl"] = 0.0 if last else _kl(f_i, f_next)
        row["forced_importance_logodds"] = 0.0 if last else _logit(f_next) - _logit(f_i)
        rows.append(row)
    return rows


def _check(store, job, grade):
    sentences = [s.text for s in _trace().sentences]
    want = _hand(store, job.run_id, grade, len(sentences), sentences)
    got = store.metrics(job.run_id, "p0")
    assert len(got) == len(want)
    varied = set()
    for i, row in enumerate(want):
        for key, value in row.items():
            assert got.loc[i, key] == pytest.approx(value, abs=1e-9), (i, key)
            varied.add(round(value, 6))
    assert len(varied) > 4  # the planted case is not degenerate (rates differ across positions)


@pytest.mark.slow  # ~2 s, ~30 s when it loads MiniLM first
def test_regex_outcome_importance_equals_hand_computation(tmp_path):
    store, job = _run(tmp_path, "regex:(?i)seven")
    _check(store, job, lambda t: re.search("(?i)seven", t) is not None)
    (run,) = store.runs()
    assert run["config"]["outcome"] == "regex:(?i)seven"
    assert outcome_label(run["config"]) == "rate of /(?i)seven/"
    assert store.get_artifact(job.run_id, "outcome_summary", "p0")["n_errors"] == 0
    from thoughtlens.report.from_store import page_data_from_store

    labels = {m["key"]: m["label"] for m in page_data_from_store(store, job.run_id, similarity=False)["metrics"]}
    assert labels["resampling_importance_accuracy"] == "Resampling importance (rate of /(?i)seven/)"


@pytest.mark.slow  # ~2 s, ~30 s when it loads MiniLM first
def test_labeller_category_outcome_importance_equals_hand_computation(tmp_path):
    store, job = _run(tmp_path, "category:self_checking", forced=False)
    split = lambda t: re.split(r"(?<=[.!?])\s+", t.strip())  # noqa: E731 - the planted texts' sentences
    grade = lambda t: any(rule_label(s) == "self_checking" for s in split(t))  # noqa: E731
    sentences = [s.text for s in _trace().sentences]
    want = _hand(store, job.run_id, grade, len(sentences), sentences)
    got = store.metrics(job.run_id, "p0")
    for i, row in enumerate(want):
        for key in (
            "accuracy",
            "resampling_importance_accuracy",
            "resampling_importance_kl",
            "resampling_importance_logodds",
            "counterfactual_importance_accuracy",
            "counterfactual_importance_logodds",
        ):
            assert got.loc[i, key] == pytest.approx(row[key], abs=1e-9), (i, key)
    assert got["accuracy"].nunique() > 1  # not degenerate
    assert got["forced_importance_logodds"].isna().all()
    assert outcome_label(store.runs()[0]["config"]) == "self_checking rate"


def test_default_outcome_keeps_run_id_and_stored_config(tmp_path):
    import hashlib
    import json
    from dataclasses import asdict

    cfg = AnchorsConfig(n_rollouts=3)
    old = {k: v for k, v in asdict(cfg).items() if k != "outcome"}  # the config before the field existed
    assert cfg.run_id() == "anchors-" + hashlib.sha1(json.dumps(old, sort_keys=True).encode()).hexdigest()[:10]
    assert "outcome" not in config_record(cfg)
    assert AnchorsConfig(n_rollouts=3, outcome="regex:x").run_id() != cfg.run_id()
    assert outcome_label({}) == "accuracy"


@pytest.mark.slow  # ~2 s, ~30 s when it loads MiniLM first
def test_outcome_that_raises_is_recorded_and_the_run_continues(tmp_path):
    def flaky(text: str) -> bool:
        if "Bananas" in text:
            raise RuntimeError("grader crashed")
        return "seven" in text

    register_outcome("flaky_seven", flaky)
    try:
        events = []
        store, job = _run(tmp_path, "flaky_seven", forced=False, on_progress=events.append)
    finally:
        unregister_outcome("flaky_seven")
    df = store.rollouts(job.run_id)
    res = df[df["condition"] == "resampled"]
    n_raise = int(res["text"].str.contains("Bananas").sum())
    summary = store.get_artifact(job.run_id, "outcome_summary", "p0")
    assert n_raise > 0 and summary["n_errors"] == n_raise and "grader crashed" in summary["first_error"]
    got = store.metrics(job.run_id, "p0")
    assert got["n_outcome_errors"].sum() == sum(res[res["sentence_index"] < len(got)]["text"].str.contains("Bananas"))
    # errors are unknown: left out of the rate
    grade = lambda t: None if "Bananas" in t else "seven" in t  # noqa: E731
    for i in range(len(got)):
        vals = [grade(t) for t in res[res["sentence_index"] == i]["text"]]
        assert got.loc[i, "accuracy"] == pytest.approx(_rate(vals))
    assert any("raised on" in (getattr(e, "note", None) or "") for e in events)
    # shown on the command line: `thoughtlens branches outcome STORE`
    from typer.testing import CliRunner

    from thoughtlens.cli import app

    res = CliRunner().invoke(app, ["branches", "outcome", str(tmp_path / "s.sqlite")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "flaky_seven" in res.output and f" {n_raise} " in res.output and "grader crashed" in res.output
    res = CliRunner().invoke(app, ["branches", "outcome", str(tmp_path / "none.sqlite")])
    assert res.exit_code == 1 and "error:" in res.output


@pytest.mark.parametrize(
    "spec, fix",
    [
        ("regex:(", "bad regular expression"),
        ("category:nope", "unknown category"),
        ("no_such_outcome", "unknown outcome"),
        ("python:nomodule", "python:MODULE:FUNCTION"),
        ("", "is empty"),
        ("category:self_checking@encoder", "use '@rules'"),
        ("category:self_checking@llm", "use '@rules'"),
    ],
)
def test_bad_outcome_specs_fail_when_the_config_is_built(spec, fix):
    with pytest.raises(ConfigError, match=re.escape(fix)):
        AnchorsConfig(outcome=spec)


def test_python_outcome_is_imported_by_path():
    spec = resolve_outcome("python:os.path:isabs")
    assert spec("/x") is True and spec("x") is False and spec.kind == "python"
