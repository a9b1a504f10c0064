"""The anchors benchmark's scoring: AUROC against sklearn, pair truth against a transitive closure, metrics read
from a store by name, and the whole pipeline's plumbing on an untrained toy model."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from thoughtlens.errors import ThoughtlensError
from thoughtlens.groundtruth.benchmark import (
    BenchConfig,
    _score_black_box,
    auroc,
    auroc_by_trace,
    exact_match_graph,
    pair_truth,
    run_benchmark,
    save_result,
    score_store,
)
from thoughtlens.groundtruth.task import generate_chain
from thoughtlens.store.run_store import RunStore


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.random(60) < 0.4
        scores = np.round(rng.normal(size=60) + labels, 1)  # rounding makes ties
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(auroc(np.ones(3), np.ones(3, bool)))


def test_auroc_by_trace_drops_nan_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    per_trace = []
    for _ in range(20):
        y = rng.random(7) < 0.5
        s = rng.normal(size=7) + 2 * y
        s[0] = np.nan
        per_trace.append((s, y))
    out = auroc_by_trace(per_trace, n_boot=300, seed=0)
    assert out["ci_lo"] <= out["auroc"] <= out["ci_hi"] and out["auroc"] > 0.8
    assert out["coverage"] == pytest.approx(6 / 7) and out["n_traces"] == 20


def test_pair_truth_against_transitive_closure():
    rng = random.Random(0)
    for _ in range(30):
        chain = generate_chain(rng)
        n = len(chain.steps)
        adj = np.zeros((n, n), bool)  # adj[j, k]: k reads j
        for k, reads in enumerate(chain.reads):
            adj[reads, k] = True
        reach = adj.copy()
        for _ in range(n):
            reach = reach | ((reach.astype(int) @ adj.astype(int)) > 0)
        label, mask = pair_truth(chain)
        assert np.array_equal(label, adj)
        assert np.array_equal(mask, np.triu(adj | ~reach, 1))


def planted_store(tmp_path, chains):
    store = RunStore(tmp_path / "s.sqlite")
    store.create_run("r", {"kind": "test"})
    for pid, chain in chains.items():
        store.add_problem("r", pid, chain.prompt, str(chain.answer))
        text, pos, sentences = chain.prompt + chain.completion, len(chain.prompt), []
        for i, step in enumerate(chain.steps):
            start = text.index(step.text(), pos)
            sentences.append({"index": i, "start": start, "end": start + len(step.text()), "text": step.text()})
            pos = start + len(step.text())
        store.add_trace("r", pid, chain.prompt, chain.completion, str(chain.answer), True, sentences)
        for i, dep in enumerate(chain.depends):
            store.put_metrics("r", pid, i, {"planted": float(dep), "inverted": -float(dep), "n_rollouts": 5.0})
    return store


def test_metrics_are_read_by_name_from_the_store(tmp_path):
    """A planted metric equal to the truth scores 1.0, its negation 0.0, whatever else the store holds."""
    rng = random.Random(2)
    chains = {f"t{i}": generate_chain(rng, held_out=True) for i in range(4)}
    store = planted_store(tmp_path, chains)
    rows, extra = _score_black_box(store, "r", chains, BenchConfig(n_boot=200))
    by = {r["method"]: r for r in rows}
    assert by["planted"]["auroc"] == 1.0 and by["inverted"]["auroc"] == 0.0
    assert "n_rollouts" not in by and extra["traces_with_matching_sentences"] == 4
    rescored = score_store(tmp_path / "s.sqlite", "r", BenchConfig(n_boot=200)).table.set_index("method")
    assert rescored.loc["planted", "auroc"] == 1.0


def test_exact_match_graph_from_planted_rollouts(tmp_path):
    """Rollouts from prefix k contain S_j verbatim only for j >= k + 2 (odd samples) or never (even ones):
    share(R_k, S_j) = 1/2 for j >= k + 2, so M[i, j] = share(R_{i+1}) - share(R_i) = -1/2 at j = i + 2, else 0."""
    chain = generate_chain(random.Random(4))
    store = planted_store(tmp_path, {"t0": chain})
    texts = [s.text() for s in chain.steps]
    n = len(texts)
    for k in range(n + 1):
        for j in range(4):
            body = "\n".join(texts[k + 2 :]) if j % 2 else "Let z = 1."
            store.add_rollout(
                "r", "t0", k, "resampled", j, text=body, answer=None, is_correct=None, n_tokens=1, finish_reason="stop"
            )
    expected = np.zeros((n, n))
    for i in range(n - 2):
        expected[i, i + 2] = -0.5
    assert np.allclose(exact_match_graph(store, "r", "t0", n), expected)


@pytest.mark.slow
def test_pipeline_plumbing_on_an_untrained_model(tmp_path):
    from thoughtlens.groundtruth.toy_model import ToyModelConfig, toy_model, toy_tokenizer

    torch.set_num_threads(1)
    model_dir = tmp_path / "model"
    toy_model(ToyModelConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64)).save_pretrained(model_dir)
    toy_tokenizer().save_pretrained(model_dir)
    rng = random.Random(3)
    chains = [generate_chain(rng, held_out=True) for _ in range(2)]
    cfg = BenchConfig(n_traces=2, n_rollouts=2, max_new_tokens=6, n_boot=100)
    result = run_benchmark(
        model_dir, tmp_path / "b.sqlite", cfg, base_traces=[(c.prompt, c.completion) for c in chains]
    )
    methods = set(result.table["method"])
    assert {"resampling_importance_kl", "suppression_matrix (white-box)", "receiver_score (white-box)"} <= methods
    assert result.extra["traces_with_matching_sentences"] == 2 and result.n_valid == 2
    assert (result.table["n_pos"] > 0).all()
    assert "| resampling_importance_kl |" in result.to_markdown()
    assert save_result(result, tmp_path / "r.json", cfg).stat().st_size > 100
    # "Reruns from one command with a seed and produces the same table": a fresh store, the same seed.
    again = run_benchmark(
        model_dir, tmp_path / "b2.sqlite", cfg, base_traces=[(c.prompt, c.completion) for c in chains]
    )
    assert again.to_markdown() == result.to_markdown()


def test_bad_input(tmp_path):
    with pytest.raises(ThoughtlensError, match="n_traces"):
        BenchConfig(n_traces=1)
    with pytest.raises(ThoughtlensError, match="no model directory"):
        run_benchmark(tmp_path / "missing", tmp_path / "s.sqlite")
