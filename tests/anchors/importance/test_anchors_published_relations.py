"""The paper's published data (20 DeepSeek-R1-Distill-Qwen-14B traces) against thoughtlens's code path:
the resampling-accuracy relation and its sign, the paper-style splitter, and the published
sentence-to-sentence graphs (step_importance.json)."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from thoughtlens.anchors.importance.definitions import Outcome
from thoughtlens.anchors.importance.metrics import sentence_metrics
from thoughtlens.anchors.importance.step_attribution import counterfactual_matrix, from_step_importance_json
from thoughtlens.trace.reasoning_trace import ReasoningTrace


def _load(d):
    return json.loads((d / "chunks_labeled.json").read_text()), json.loads((d / "base_solution.json").read_text())


def _outcomes_with_accuracy(acc: float) -> list[Outcome]:
    """Answered rollouts whose correct / answered is exactly `acc` (the published rollouts number <= 100,
    plus two unanswered ones, which the paper's accuracy leaves out)."""
    f = Fraction(acc).limit_denominator(100)
    assert f.numerator / f.denominator == acc, f"{acc} is not k/n with n <= 100"
    right, wrong = Outcome("A", True, "x"), Outcome("B", False, "y")
    return [right] * f.numerator + [wrong] * (f.denominator - f.numerator) + [Outcome(None, False, None)] * 2


def test_resampling_accuracy_relation_holds_in_the_files_and_through_thoughtlens(published_problems):
    assert len(published_problems) == 20
    for d in published_problems:
        chunks, _ = _load(d)
        acc = [c["accuracy"] for c in chunks]
        published = [c["resampling_importance_accuracy"] for c in chunks]
        n = len(chunks)
        assert all(published[i] == acc[i + 1] - acc[i] for i in range(n - 1)), d  # exactly, in their files
        assert published[-1] == 0.0
        resampled = [_outcomes_with_accuracy(a) for a in acc] + [[Outcome("A", True, "z")]]
        sims = [np.zeros(len(r)) for r in resampled[:n]]
        rows = sentence_metrics([c["chunk"] for c in chunks], resampled, similarities=sims, conventions="paper")
        assert [r["accuracy"] for r in rows] == acc, d
        assert [r["resampling_importance_accuracy"] for r in rows] == published, d  # same values, same sign


def test_paper_splitter_reproduces_the_published_chunks(published_problems):
    same_count, agreed, total = 0, 0, 0
    for d in published_problems:
        chunks, base = _load(d)
        trace = ReasoningTrace.parse(base["prompt"], base["solution"], split_style="paper")
        ours = ["".join(s.text.split()) for s in trace.sentences]
        theirs = ["".join(c["chunk"].split()) for c in chunks]
        same_count += len(ours) == len(theirs)
        # boundaries as cumulative offsets in the whitespace-free text (the paper joins pieces with spaces)
        b_ours, b_theirs = set(np.cumsum([len(x) for x in ours])), set(np.cumsum([len(x) for x in theirs]))
        agreed += len(b_ours & b_theirs)
        total += len(b_theirs)
    assert same_count >= 19
    assert agreed / total >= 0.995, agreed / total


def test_published_step_importance_reads_as_an_upper_triangular_matrix(published_problems):
    for d in published_problems[:3]:
        chunks, _ = _load(d)
        records = json.loads((d / "step_importance.json").read_text())
        m = from_step_importance_json(records, len(chunks))
        assert m.shape == (len(chunks), len(chunks)) and np.allclose(np.tril(m), 0)
        rec = records[0]["target_impacts"][3]
        assert m[0, rec["target_chunk_idx"]] == rec["importance_score"]


def _keyword_embed(texts):
    """A known embedding: a unit vector per keyword; a text maps to its keyword's direction."""
    keys = ["alpha", "beta", "gamma", "delta"]
    out = np.zeros((len(texts), len(keys) + 1))
    for r, t in enumerate(texts):
        hits = [k for k, w in enumerate(keys) if w in t.lower()]
        out[r, hits[0] if hits else len(keys)] = 1.0
    return out


def test_counterfactual_matrix_equals_the_papers_match_rate_difference():
    sentences = ["Alpha is first here.", "Beta comes second.", "Gamma comes third.", "Delta is last."]
    rollouts = [
        ["Beta comes next. Gamma too.", "Nothing relevant here.", ""],  # R_0 (empty text dropped)
        ["Beta again here. Delta at the end.", "Gamma and more."],  # R_1
        ["Gamma right away.", "Gamma again now.", "Delta finally."],  # R_2
        ["Delta only here."],  # R_3
    ]
    m = counterfactual_matrix(sentences, rollouts, embed=_keyword_embed, split_style="paper")

    def rate(k, word):  # share of R_k's non-empty rollouts mentioning the word (keyword match = cosine 1)
        texts = [t for t in rollouts[k] if t]
        return sum(word in t.lower() for t in texts) / len(texts)

    words = ["alpha", "beta", "gamma", "delta"]
    for i in range(3):
        for j in range(4):
            expected = rate(i + 1, words[j]) - rate(i, words[j]) if j > i else 0.0
            assert m[i, j] == pytest.approx(expected, abs=1e-12), (i, j)
    assert np.all(m[3] == 0)
