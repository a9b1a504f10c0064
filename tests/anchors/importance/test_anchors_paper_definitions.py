"""The paper's metric definitions, re-implemented here in plain lines from their code, against thoughtlens.

Reference: ../shared/reference/thought-anchors/analyze_rollouts.py (analyze_problem,
calculate_*_importance_*, calculate_kl_divergence with use_prob_true=False as their CLI sets it).
The reference below works on their data layout (a list of solution dicts per chunk, "" for no answer)
and imports nothing from thoughtlens; answers are plain strings that any normaliser leaves alone.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from thoughtlens.anchors.importance.definitions import Outcome
from thoughtlens.anchors.importance.metrics import sentence_metrics

THRESHOLD = 0.8

# ---------------------------------------------------------------- the reference (their code, condensed)


def ref_kl(sols1, sols2, alpha=1e-9):
    c1, c2 = defaultdict(int), defaultdict(int)
    for s in sols1:
        if s["answer"]:
            c1[s["answer"]] += 1
    for s in sols2:
        if s["answer"]:
            c2[s["answer"]] += 1
    if not c1 or not c2:
        return 0.0
    V = set(c1) | set(c2)
    t1, t2 = sum(c1.values()) + alpha * len(V), sum(c2.values()) + alpha * len(V)
    kl = 0.0
    for a in V:
        p, q = (c1[a] + alpha) / t1, (c2[a] + alpha) / t2
        kl += p * math.log(p / q)
    return max(0.0, kl)


def ref_acc(sols):
    correct = sum(1 for s in sols if s["is_correct"] is True and s["answer"] != "")
    total = len([s for s in sols if s["is_correct"] is not None and s["answer"] != ""])
    return correct / total if total > 0 else 0.0


def reference(chunks: dict[int, list[dict]], forced: dict[int, list[dict]] | None, alpha=1e-9):
    """Per chunk: their metrics. chunks[i] = solutions of chunk_i/solutions.json, each with "answer",
    "is_correct", "chunk_resampled" and "sim" (the cosine they compute from embeddings)."""
    acc = {i: ref_acc(s) for i, s in chunks.items()}
    info = {i: [s for s in sols if s["answer"] != ""] for i, sols in chunks.items()}
    facc = {i: ref_acc(s) for i, s in forced.items()} if forced else {}
    out = {}
    for i in chunks:
        m = {"accuracy": acc[i]}
        nxt = [k for k in info if k > i]
        # calculate_counterfactual_importance_accuracy / _kl
        if not nxt:
            cf_acc, dtf, od, cf_kl = 0.0, 0.0, 0.0, 0.0
        else:
            cur, nsol = info[i], info[min(nxt)]
            dis = [s for s in cur if s["sim"] < THRESHOLD]
            sim = [s for s in cur if s["sim"] >= THRESHOLD]
            dtf = len(dis) / len(cur) if cur else 0.0
            res = [s["chunk_resampled"] for s in cur]
            od = 1.0 - len(set(res)) / len(res) if res else 0.0
            if not dis or not nsol:
                cf_acc, cf_kl = 0.0, 0.0
            else:
                cf_acc = ref_acc(dis) - ref_acc(nsol)
                cf_kl = ref_kl(dis, nsol + sim, alpha)
        m.update(
            counterfactual_importance_accuracy=cf_acc,
            counterfactual_importance_kl=cf_kl,
            different_trajectories_fraction=dtf,
            overdeterminedness=od,
        )
        # calculate_resampling_importance_accuracy / _kl
        m["resampling_importance_accuracy"] = acc[i + 1] - acc[i] if i + 1 in acc else 0.0
        m["resampling_importance_kl"] = (
            ref_kl(chunks[i], chunks[min(nxt)], alpha) if nxt and chunks[i] and chunks[min(nxt)] else 0.0
        )
        if forced:
            fn = [k for k in facc if k > i]
            m["forced_importance_accuracy"] = facc[min(fn)] - facc[i] if fn else 0.0
            m["forced_importance_kl"] = ref_kl(forced[i], forced[min(fn)], alpha) if fn else 0.0
        out[i] = m
    return out


# ---------------------------------------------------------------- hand-built rollout sets


def sol(answer, correct, resampled="r", sim=0.5):
    return {"answer": answer, "is_correct": correct, "chunk_resampled": resampled, "sim": sim}


def to_thoughtlens(chunks, n_sentences):
    """Their per-chunk solutions -> R_0..R_n (R_n: rollouts with the whole reasoning kept, which the
    paper never samples; filled with junk that must not influence the paper's numbers)."""
    resampled, sims = [], []
    for i in range(n_sentences):
        resampled.append([Outcome(s["answer"] or None, s["is_correct"], s["chunk_resampled"]) for s in chunks[i]])
        sims.append(np.array([s["sim"] for s in chunks[i]], dtype=float))
    resampled.append([Outcome("999", False, "junk")] * 3)
    return resampled, sims


CASES = {
    "disjoint_supports": [
        [sol("5", False, "a", 0.1)] * 4,
        [sol("4", True, "b", 0.9)] * 4,
        [sol("4", True, "c", 0.2), sol("7", False, "d", 0.95)],
    ],
    "missing_answers": [
        [sol("", False, "a", 0.1), sol("4", True, "b", 0.2), sol("5", False, "c", 0.9), sol("", False, "a", 0.3)],
        [sol("", False, "x", 0.1), sol("", False, "y", 0.1), sol("4", True, "z", 0.85)],
        [sol("", False, "x", 0.1)] * 3,  # nothing answered: accuracy 0.0, KL 0.0
        [sol("4", True, "q", 0.1), sol("6", False, "q", 0.1)],
    ],
    "all_similar": [
        [sol("4", True, "s", 0.9), sol("5", False, "s", 0.95), sol("4", True, "t", 0.81)],
        [sol("4", True, "u", 0.8), sol("4", True, "u", 0.99)],
    ],
    "all_dissimilar": [
        [sol("4", True, "a", 0.1), sol("5", False, "b", 0.2), sol("6", False, "c", 0.79)],
        [sol("4", True, "d", 0.0), sol("5", False, "d", -0.3)],
        [sol("4", True, "e", 0.5)],
    ],
    "single_rollouts": [
        [sol("5", False, "a", 0.1)],
        [sol("4", True, "b", 0.3)],
        [sol("", False, "c", 0.1)],
        [sol("4", True, "d", 0.9)],
    ],
    "mixed_answers": [
        [
            sol("4", True, "a", 0.1),
            sol("5", False, "b", 0.85),
            sol("6", False, "c", 0.3),
            sol("4", True, "a", 0.7),
            sol("", False, "d", 0.2),
        ],
        [sol("4", True, "e", 0.9), sol("4", True, "f", 0.4), sol("5", False, "g", 0.1)],
        [sol("4", True, "h", 0.95), sol("6", False, "h", 0.95), sol("6", False, "i", 0.5)],
    ],
}

KEYS = (
    "accuracy",
    "resampling_importance_accuracy",
    "resampling_importance_kl",
    "counterfactual_importance_accuracy",
    "counterfactual_importance_kl",
    "different_trajectories_fraction",
    "overdeterminedness",
    "forced_importance_accuracy",
    "forced_importance_kl",
)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("alpha", [1e-9, 0.5])
def test_paper_conventions_equal_an_independent_reimplementation(name, alpha):
    chunk_list = CASES[name]
    n = len(chunk_list)
    chunks = dict(enumerate(chunk_list))
    # Forced rollouts: reuse the same hand-built sets shifted by one, so forced differs from resampled.
    forced_chunks = {i: chunk_list[(i + 1) % n] for i in range(n)}
    expected = reference(chunks, forced_chunks, alpha)
    resampled, sims = to_thoughtlens(chunks, n)
    forced, _ = to_thoughtlens(forced_chunks, n)
    rows = sentence_metrics(
        [f"S{i}." for i in range(n)],
        resampled,
        forced,
        similarities=sims,
        conventions="paper",
        alpha=alpha,
        threshold=THRESHOLD,
    )
    for i in range(n):
        for key in KEYS:
            assert rows[i][key] == pytest.approx(expected[i][key], abs=1e-9), (name, i, key)


def test_the_last_sentence_is_zero_in_the_paper_and_uses_the_kept_set_in_thoughtlens():
    chunks = dict(enumerate(CASES["mixed_answers"]))
    resampled, sims = to_thoughtlens(chunks, 3)
    paper = sentence_metrics(["a.", "b.", "c."], resampled, similarities=sims, conventions="paper")
    assert all(paper[-1][k] == 0.0 for k in KEYS[1:7])
    tl = sentence_metrics(["a.", "b."], resampled[1:], similarities=sims[1:], conventions="thoughtlens")
    # thoughtlens: S_last vs R_n = three wrong "999" answers -> accuracy drops from 1/3 to 0.
    assert tl[-1]["resampling_importance_accuracy"] == pytest.approx(0 - 1 / 3)


def test_the_issues_example_kl_direction():
    """kept {A:10}, resampled {A:5, B:5}: 0.508 nats in the old order, 0.876 in the paper's (alpha 0.5)."""
    resampled = [
        [Outcome("A", True, "x")] * 5 + [Outcome("B", False, "x")] * 5,
        [Outcome("A", True, "y")] * 10,
        [Outcome("A", True, "y")] * 10,
    ]
    sims = [np.full(10, 0.9), np.full(10, 0.9)]
    paper = sentence_metrics(["s.", "t."], resampled, similarities=sims, conventions="paper", alpha=0.5)
    old = sentence_metrics(["s.", "t."], resampled, similarities=sims, conventions="thoughtlens", alpha=0.5)
    p, q = np.array([5.5, 5.5]) / 11, np.array([10.5, 0.5]) / 11
    assert paper[0]["resampling_importance_kl"] == pytest.approx(float(np.sum(p * np.log(p / q))), abs=1e-12)
    assert old[0]["resampling_importance_kl"] == pytest.approx(float(np.sum(q * np.log(q / p))), abs=1e-12)
    assert (
        round(paper[0]["resampling_importance_kl"], 3) == 0.876
        and round(old[0]["resampling_importance_kl"], 3) == 0.508
    )


def test_paper_counterfactual_accuracy_has_the_papers_sign():
    # dissimilar resamples all wrong, kept all right: the paper reports acc(dissimilar) - acc(kept) = -1.
    resampled = [[Outcome("5", False, "x")] * 4, [Outcome("4", True, "y")] * 4, [Outcome("4", True, "y")] * 4]
    sims = [np.full(4, 0.1), np.full(4, 0.1)]
    paper = sentence_metrics(["s.", "t."], resampled, similarities=sims, conventions="paper")
    old = sentence_metrics(["s.", "t."], resampled, similarities=sims, conventions="thoughtlens")
    assert paper[0]["counterfactual_importance_accuracy"] == -1.0
    assert old[0]["counterfactual_importance_accuracy"] == 1.0
    assert paper[0]["resampling_importance_accuracy"] == 1.0


def test_bad_alpha_and_threshold_are_one_line_errors():
    r = [[Outcome("4", True, "x")], [Outcome("4", True, "x")]]
    with pytest.raises(ValueError, match="alpha must be > 0.*1e-9"):
        sentence_metrics(["s."], r, similarities=[np.zeros(1)], alpha=0.0)
    with pytest.raises(ValueError, match="outside \\[-1, 1\\]"):
        sentence_metrics(["s."], r, similarities=[np.zeros(1)], threshold=2.0)
