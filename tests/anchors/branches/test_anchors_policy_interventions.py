"""On-policy vs off-policy interventions (issue 17) on a scripted model whose behaviour is planted: only
one resampled sentence ("Hmm okay.", drawn as candidate 5, i.e. in the second iteration) leads the model
to say the target next, so the search must keep exactly it; the three rollout sets see the prefixes of
onpolicy_chain_disruption.py / measure_determination.py; rates, effects and Newcombe CIs equal a hand
computation (re-derived below from the Wilson formula); the job resumes without sampling again."""

from __future__ import annotations

import math
import re

import numerics
import numpy as np
import pytest
from typer.testing import CliRunner

from thoughtlens.anchors.branches.policy_edits import (
    CANDIDATE,
    CONDITIONS,
    NEXT,
    InterventionConfig,
    first_sentence_exact,
    measure_interventions,
    resolve_target,
)
from thoughtlens.errors import ConfigError
from thoughtlens.sample.base import Completion
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.reasoning_trace import ReasoningTrace

PROMPT = "Question: what is 3 + 4?\nAnswer: "
TRACE = (
    "First we add three and four together. That makes seven in total. So the sum is seven. So the answer is \\boxed{7}."
)
TARGET = "Let me double check."
OUTCOME = "regex:\\byes\\b"


def _trace() -> ReasoningTrace:
    return ReasoningTrace.parse(PROMPT, TRACE)


class Scripted:
    """before = text before S_1. Candidates from `before`: " Hmm okay." for sample 5, else " Plain step j.";
    continuations of "Hmm okay." say the target for odd samples; full rollouts say "yes" with a rate
    that depends on which prefix they continue (kept 1/4, off-policy 1/2, on-policy 1)."""

    name = "scripted"

    def __init__(self, fail_after: int | None = None):
        tr = _trace()
        self.before, self.kept = tr.rollout_prefix(1), tr.rollout_prefix(2)
        self.prefixes: list[str] = []
        self.calls, self.fail_after = 0, fail_after

    def text(self, prefix: str, j: int) -> str:
        if prefix == self.kept:
            return " yes." if j % 4 == 0 else " no."
        if prefix == self.before:
            return " Hmm okay. Then more." if j == 5 else f" Plain step {j}. Then more."
        if prefix.startswith(self.before) and prefix.count(".") == self.before.count(".") + 1:
            if prefix.endswith("Hmm okay.") and j % 2 == 1:
                return f" {TARGET} More text."
            return " Something else entirely. More."
        if prefix.endswith(" " + TARGET) and "Hmm" not in prefix:  # off-policy
            return " yes." if j % 2 == 0 else " no."
        if "Hmm okay." in prefix:  # on-policy
            return " yes, checked."
        raise AssertionError(f"unexpected prefix {prefix!r}")

    def sample(self, requests, params, on_completion=None):
        out = []
        for p, req in enumerate(requests):
            self.prefixes.append(req.prefix)
            for j in req.sample_indices:
                self.calls += 1
                if self.fail_after is not None and self.calls > self.fail_after:
                    raise KeyboardInterrupt("killed")
                c = Completion(p, j, self.text(req.prefix, j), 3, "stop")
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


def fake_embed(texts):
    """Unit vectors: the target's direction for sentences saying "double check", orthogonal otherwise."""
    return np.array([[1.0, 0.0] if "double check" in t else [0.0, 1.0] for t in texts])


def _store(path) -> RunStore:
    store = RunStore(path)
    tr = _trace()
    store.create_run("anchors-x", {"think_tags": ["<think>", "</think>"]})
    store.add_problem("anchors-x", "p0", "What is 3 + 4?", "7")
    store.add_trace(
        "anchors-x",
        "p0",
        PROMPT,
        TRACE,
        "7",
        True,
        [dict(index=s.index, start=s.start, end=s.end, text=s.text) for s in tr.sentences],
    )
    return store


CFG = InterventionConfig(
    n_rollouts=8,
    num_iterations=3,
    num_chunk_resamples=4,
    num_continuation_samples=2,
    outcome=OUTCOME,
    max_new_tokens=16,
)


def _newcombe(k0, n0, k1, n1, z=1.959963984540054):
    """Newcombe (1998) method 10 for p1 - p0, from Wilson score intervals written out here."""

    def wilson(k, n):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    p0, p1 = k0 / n0, k1 / n1
    (l0, h0), (l1, h1) = wilson(k0, n0), wilson(k1, n1)
    d = p1 - p0
    return d, d - math.sqrt((p1 - l1) ** 2 + (h0 - p0) ** 2), d + math.sqrt((h1 - p1) ** 2 + (p0 - l0) ** 2)


def test_onpolicy_search_keeps_the_planted_sentence_and_effects_match_hand_computation(tmp_path):
    store, sampler = _store(tmp_path / "s.sqlite"), Scripted()
    res = measure_interventions(sampler, store, "anchors-x", "p0", 1, TARGET, CFG, embed=fake_embed)
    tr = _trace()
    before = tr.rollout_prefix(1)

    # the search: iteration 1 (candidates 0-3) finds nothing, iteration 2 keeps candidate 5 with its 2nd continuation
    s = res.search
    assert s.success and s.iterations_used == 2 and s.n_candidates == 8 and s.candidates_per_kept == 8
    assert s.n_continuations == 16 and s.n_passing == 1 and s.pass_rate == 1 / 16
    assert s.candidate == " Hmm okay." and s.next_sentence == " " + TARGET and s.best_cosine == 1.0

    # the prefixes each rollout set continued (their run_full_rollouts / chain_disruption_experiment)
    off = tr.prefix_through(1) + " " + TARGET
    on = before + " Hmm okay." + " " + TARGET
    assert {tr.rollout_prefix(2), off, on} <= set(sampler.prefixes)

    # rates and effects from the stored rollouts, by hand
    df = store.rollouts([r["run_id"] for r in store.runs() if r["run_id"].startswith("intervene-")][0], "p0")
    rate = {}
    for cond in ("kept", "offpolicy", "onpolicy"):
        texts = list(df[df["condition"] == cond]["text"])
        assert len(texts) == 8
        rate[cond] = (sum(re.search(r"\byes\b", t) is not None for t in texts), len(texts))
    assert rate == {"kept": (2, 8), "offpolicy": (4, 8), "onpolicy": (8, 8)}
    assert len(df[df["condition"] == CANDIDATE]) == 8 and len(df[df["condition"] == NEXT]) == 16
    for cond in ("offpolicy", "onpolicy"):
        c = res.conditions[cond]
        d, lo, hi = _newcombe(*rate["kept"], *rate[cond])
        assert c.rate == rate[cond][0] / 8
        assert (c.effect, c.ci_low, c.ci_high) == pytest.approx((d, lo, hi), abs=1e-12)
    assert res.conditions["kept"].effect is None

    # resume: everything is stored, nothing is sampled again, the same numbers come back
    again = Scripted(fail_after=0)
    res2 = measure_interventions(again, store, "anchors-x", "p0", 1, TARGET, CFG, embed=fake_embed)
    assert again.calls == 0 and res2.to_dict() == res.to_dict()


def test_killed_intervention_resumes_to_the_uninterrupted_result(tmp_path):
    full = measure_interventions(
        Scripted(), _store(tmp_path / "a.sqlite"), "anchors-x", "p0", 1, TARGET, CFG, embed=fake_embed
    )
    store = _store(tmp_path / "b.sqlite")
    with pytest.raises(KeyboardInterrupt):
        measure_interventions(Scripted(fail_after=30), store, "anchors-x", "p0", 1, TARGET, CFG, embed=fake_embed)
    resumed_sampler = Scripted()
    resumed = measure_interventions(resumed_sampler, store, "anchors-x", "p0", 1, TARGET, CFG, embed=fake_embed)
    assert resumed.to_dict() == full.to_dict()
    assert resumed_sampler.calls == 8 + 16 + 3 * 8 - 30  # only what the killed job had not stored


def test_search_that_never_matches_runs_no_onpolicy_rollouts(tmp_path):
    store = _store(tmp_path / "s.sqlite")
    cfg = InterventionConfig(
        n_rollouts=4,
        num_iterations=1,
        num_chunk_resamples=4,
        num_continuation_samples=2,
        outcome=OUTCOME,
        max_new_tokens=16,
    )
    res = measure_interventions(Scripted(), store, "anchors-x", "p0", 1, TARGET, cfg, embed=fake_embed)
    assert not res.search.success and res.search.candidates_per_kept is None and res.search.best_cosine == 0.0
    assert set(res.conditions) == {"kept", "offpolicy"}


def test_first_sentence_and_named_targets():
    assert first_sentence_exact(" Hmm okay. Then more.") == " Hmm okay."
    assert first_sentence_exact("x = 3.5 so far") == "x = 3.5 so far"
    assert resolve_target("question") == "But wait, is this really the right approach?"
    assert resolve_target(" My own sentence. ") == "My own sentence."


@pytest.mark.parametrize("target", ["", "   ", None])
def test_empty_target_sentence_is_a_one_line_error(tmp_path, target):
    store = _store(tmp_path / "s.sqlite")
    with pytest.raises(ConfigError, match=r"^the target sentence is empty: pass --target TEXT") as e:
        measure_interventions(Scripted(fail_after=0), store, "anchors-x", "p0", 1, target, CFG, embed=fake_embed)
    assert "\n" not in str(e.value)


def test_bad_intervention_inputs(tmp_path):
    store = _store(tmp_path / "s.sqlite")
    with pytest.raises(ConfigError, match="out of range"):
        measure_interventions(Scripted(fail_after=0), store, "anchors-x", "p0", 9, TARGET, CFG, embed=fake_embed)
    with pytest.raises(ConfigError, match="needs token log-probs"):
        measure_interventions(
            Scripted(fail_after=0),
            store,
            "anchors-x",
            "p0",
            1,
            TARGET,
            InterventionConfig(w_logprob=0.5, outcome=OUTCOME),
            embed=fake_embed,
        )
    with pytest.raises(ConfigError, match="--candidates"):
        InterventionConfig(num_chunk_resamples=0)


def test_cli_empty_target_is_one_red_line(tmp_path):
    from thoughtlens.cli import app

    store = _store(tmp_path / "s.sqlite")
    store.close()
    r = CliRunner().invoke(
        app, ["branches", "intervene", str(tmp_path / "s.sqlite"), "--sentence", "1", "--target", "  "]
    )
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the target sentence is empty")


def test_grade_full_reads_the_prefix_too(tmp_path):
    """--grade full (theirs, the default): prefix + generated text, so a regex on the target's words is true of
    every off-policy rollout; --grade generated reads only what the rollouts wrote."""
    store = _store(tmp_path / "s.sqlite")
    kw = dict(
        n_rollouts=4,
        num_iterations=2,
        num_chunk_resamples=4,
        num_continuation_samples=2,
        outcome="regex:double check",
        max_new_tokens=16,
    )
    full = measure_interventions(
        Scripted(), store, "anchors-x", "p0", 1, TARGET, InterventionConfig(**kw), embed=fake_embed
    )
    gen = measure_interventions(
        Scripted(), store, "anchors-x", "p0", 1, TARGET, InterventionConfig(grade="generated", **kw), embed=fake_embed
    )
    assert [full.conditions[c].rate for c in CONDITIONS] == [0.0, 1.0, 1.0]
    assert [gen.conditions[c].rate for c in CONDITIONS] == [0.0, 0.0, 0.0]


@pytest.mark.slow  # the tiny_lm fixture converts the bundled tokenizer (~20 s cold)
def test_hf_mean_logprob_equals_hf_loss(tiny_lm):
    """The log-prob term of the score: minus HF's own mean cross-entropy over the continuation's tokens."""
    import torch

    from thoughtlens.anchors.branches.policy_edits import hf_mean_logprob

    prefix, cont = "Question: what is 3 + 4? First we add.", " Then we check it twice."
    tok = tiny_lm.tokenizer
    ids = tok(prefix + cont, add_special_tokens=False)["input_ids"]
    n_p = len(tok(prefix, add_special_tokens=False)["input_ids"])
    labels = torch.tensor([[-100] * n_p + ids[n_p:]])
    with torch.no_grad():
        out = tiny_lm.hf_model(torch.tensor([ids]), labels=labels)
    # the same forward (the same logits) on both sides: only the float32 log-softmax and the mean over the
    # continuation round differently, at eps(float32) of the log-probs' scale
    logp = torch.log_softmax(out.logits[0, n_p - 1 : -1].float(), dim=-1)
    bound = numerics.tol(torch.float32, numerics.magnitude(logp), depth=len(ids) - n_p)
    assert hf_mean_logprob(tiny_lm)(prefix, cont) == pytest.approx(-float(out.loss), abs=bound)
