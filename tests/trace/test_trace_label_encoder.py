"""The encoder labeller (MiniLM fine-tuned on a sentence with its neighbours) and the generic
leave-problems-out CV: it must learn a tag that only the *previous* sentence reveals (which a
sentence-only model cannot), round-trip through its file, and refuse bad input in one line."""

from __future__ import annotations

import numerics
import numpy as np
import pytest

from thoughtlens.errors import ThoughtlensError
from thoughtlens.trace.label_encoder import (
    encoder_inputs,
    load_encoder_classifier,
    save_encoder_classifier,
    train_encoder_classifier,
)
from thoughtlens.trace.label_eval import group_cv_predictions
from thoughtlens.trace.labelers import get_labeler, label_sentences

CUES = {
    "uncertainty_management": ["Wait, that seems wrong.", "Hmm, I am not sure about that.", "Wait, maybe I erred."],
    "active_computation": ["The sum is 12.", "Then 7 times 3 is 21.", "Subtracting gives 40."],
}
TARGETS = [
    "Let me look at it again.",
    "I will go over the numbers.",
    "Now the next part.",
    "Here is the step.",
    "Consider the value.",
    "This is the key quantity.",
    "The total follows.",
    "Look at the result.",
]


def _trace(rng, targets):
    """Alternating cue / target sentences; a target's tag is the kind of the cue *before* it."""
    sents, tags = [], []
    for _ in range(4):
        kind = "uncertainty_management" if rng.random() < 0.5 else "active_computation"
        sents += [CUES[kind][rng.integers(3)], targets[rng.integers(len(targets))]]
        tags += [kind, kind]
    return sents, tags


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    train = [_trace(rng, TARGETS[:6]) for _ in range(24)]
    test = [_trace(rng, TARGETS[6:]) for _ in range(8)]  # target sentences never seen in training
    return train, test


@pytest.fixture(scope="module")
def trained(data):
    train, _ = data
    return train_encoder_classifier([s for s, _ in train], [t for _, t in train], epochs=4, lr=2e-4, batch_size=16)


def _target_accuracy(clf, test):
    pred = [clf.predict(s) for s, _ in test]
    return np.mean([p[i] == t[i] for p, (_, t) in zip(pred, test) for i in range(1, len(t), 2)])


def test_encoder_inputs_pair_each_sentence_with_its_neighbours():
    s = ["A.", "B.", "C."]
    assert encoder_inputs(s) == [("A.", " [SEP] B."), ("B.", "A. [SEP] C."), ("C.", "B. [SEP] ")]
    assert encoder_inputs(s, context=2)[2] == ("C.", "A. B. [SEP] ")
    assert encoder_inputs(s, context=0)[1] == ("B.", " [SEP] ")


def test_encoder_learns_a_tag_only_the_previous_sentence_reveals(data, trained):
    _, test = data
    assert _target_accuracy(trained, test) >= 0.9
    # the control: the same training without neighbours can only guess (the targets' own words carry no tag)
    train, _ = data
    blind = train_encoder_classifier(
        [s for s, _ in train], [t for _, t in train], context=0, epochs=4, lr=2e-4, batch_size=16
    )
    assert _target_accuracy(blind, test) <= 0.75


def test_saved_weights_predict_the_same(trained, data, tmp_path):
    import torch

    sents = data[1][0][0]
    f32, f16 = tmp_path / "e32.safetensors", tmp_path / "e16.safetensors"
    save_encoder_classifier(trained, f32, dtype=torch.float32)
    save_encoder_classifier(trained, f16)
    want = trained.predict_proba(sents)
    # probabilities (scale 1) recomputed in float32 from the same weights: float32 rounding through the
    # encoder's layers and the head
    depth = trained.encoder.config.num_hidden_layers + 1
    numerics.assert_close(
        load_encoder_classifier(f32).predict_proba(sents), want, dtype=torch.float32, depth=depth, scale=1.0
    )
    # float16 file: every weight rounded once to float16 (the computation stays float32), at the scale of 1
    numerics.assert_close(load_encoder_classifier(f16).predict_proba(sents), want, dtype=torch.float16, scale=1.0)
    assert f16.stat().st_size < 0.6 * f32.stat().st_size  # float16, embeddings left out
    lab = get_labeler("encoder", path=f32)
    assert label_sentences(sents, lab) == [[t] for t in trained.predict(sents)]


def _far_trace(rng, targets):
    """A mode sentence, then neutral targets; every tag is the trace's mode, which only the FIRST sentence says."""
    kind = "uncertainty_management" if rng.random() < 0.5 else "active_computation"
    opener = {"uncertainty_management": "Wait, I am unsure of all of this.", "active_computation": "The sum is 12."}[
        kind
    ]
    return [opener] + [targets[rng.integers(len(targets))] for _ in range(5)], [kind] * 6


def test_trace_rnn_reads_a_sentence_beyond_the_neighbours(tmp_path):
    import torch

    rng = np.random.default_rng(1)
    train = [_far_trace(rng, TARGETS[:6]) for _ in range(24)]
    test = [_far_trace(rng, TARGETS[6:]) for _ in range(8)]

    def far_accuracy(clf):  # the targets 2..5 are >= 2 sentences from the opener: outside context 1
        return np.mean([p == t[i] for s, t in test for i, p in enumerate(clf.predict(s)) if i >= 2])

    kw = dict(context=1, lr=3e-4, batch_size=16)
    rnn = train_encoder_classifier([s for s, _ in train], [t for _, t in train], epochs=8, trace_rnn=True, **kw)
    assert far_accuracy(rnn) >= 0.9
    plain = train_encoder_classifier([s for s, _ in train], [t for _, t in train], epochs=4, **kw)
    assert far_accuracy(plain) <= 0.75  # the neighbours alone cannot see the opener
    f = tmp_path / "rnn.safetensors"
    save_encoder_classifier(rnn, f, dtype=torch.float32)
    back = load_encoder_classifier(f)
    assert back.trace_rnn
    # float32 rounding through the encoder's layers, the GRU and the head, at the probabilities' scale of 1
    numerics.assert_close(
        back.predict_proba(test[0][0]),
        rnn.predict_proba(test[0][0]),
        dtype=torch.float32,
        depth=rnn.encoder.config.num_hidden_layers + 2,
        scale=1.0,
    )


def test_bad_input_is_refused_in_one_line(tmp_path):
    for call, match in [
        (lambda: train_encoder_classifier([["A.", "B."]], [["problem_setup"]]), "one tag per sentence"),
        (lambda: train_encoder_classifier([["A.", "B."]], [["problem_setup"] * 2]), "fewer than 2 categories"),
        (lambda: train_encoder_classifier([["A.", "B."]], [["problem_setup", "planning"]]), "planning"),
        (lambda: load_encoder_classifier(tmp_path / "none.safetensors"), "--encoder-out"),
        (lambda: get_labeler("encoder"), "path="),
    ]:
        with pytest.raises(ThoughtlensError, match=match) as e:
            call()
        assert "\n" not in str(e.value)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(Exception):
        load_encoder_classifier(bad)


def test_group_cv_never_trains_on_the_held_out_problem_and_resumes_from_its_cache(tmp_path):
    traces = [[f"s{t}a", f"s{t}b"] for t in range(6)]
    labels = [["problem_setup", "active_computation"]] * 6
    groups = ["p0", "p0", "p1", "p1", "p2", "p3"]
    seen: list[set[str]] = []

    def fit(train_traces, train_labels):
        trained_on = {s[0] for s in train_traces}
        seen.append(trained_on)
        return lambda s: ["unknown" if s[0] in trained_on else "problem_setup"] * len(s)

    preds = group_cv_predictions(traces, labels, groups, fit, n_splits=4, cache_dir=tmp_path)
    assert len(seen) == 4 and all(p == ["problem_setup"] * 2 for p in preds)  # never predicted by a fit that saw it
    for t, g in enumerate(groups):  # the partner trace of the same problem was held out too
        for u, h in enumerate(groups):
            if g == h:
                assert all(
                    not ({traces[t][0], traces[u][0]} & s) or (traces[t][0] in s) == (traces[u][0] in s) for s in seen
                )

    def broken(*_):
        raise AssertionError("a cached fold was refitted")

    assert group_cv_predictions(traces, labels, groups, broken, n_splits=4, cache_dir=tmp_path) == preds
    partial_dir = tmp_path / "partial"
    partial_dir.mkdir()
    (tmp_path / "fold_1.json").rename(partial_dir / "fold_1.json")
    partial = group_cv_predictions(traces, labels, groups, broken, n_splits=4, cache_dir=partial_dir, only_cached=True)
    assert (
        sum(p == preds[t] for t, p in enumerate(partial)) == sum(p != [] for p in partial) >= 1
    )  # fold 1 only, rest empty
    assert [] in partial
    (partial_dir / "fold_1.json").rename(tmp_path / "fold_1.json")
    (tmp_path / "fold_0.json").unlink()
    assert group_cv_predictions(traces, labels, groups, fit, n_splits=4, cache_dir=tmp_path) == preds
    assert len(seen) == 5  # only the missing fold ran again
    with pytest.raises(ThoughtlensError, match="one entry per trace"):
        group_cv_predictions(traces, labels[:3], groups, fit)
    with pytest.raises(ThoughtlensError, match=">= 2 problems"):
        group_cv_predictions(traces, labels, ["p"] * 6, fit)


def test_sweep_scores_each_setting_and_the_average_of_their_cached_probabilities(tmp_path):
    """scripts/category_encoder_sweep.py --merge: settings read back from group_cv_predictions' fold cache; two
    settings each right on one sentence of two are 0.5 alone and 1.0 averaged (worked out by hand)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    import category_encoder_sweep as sweep

    traces = [["A.", "B."]] * 4
    labels = [["active_computation", "plan_generation"]] * 4
    groups = ["p0", "p0", "p1", "p1"]
    probs = {
        "a": [{"active_computation": 0.9, "plan_generation": 0.1}, {"active_computation": 0.6, "plan_generation": 0.4}],
        "b": [{"active_computation": 0.4, "plan_generation": 0.6}, {"active_computation": 0.1, "plan_generation": 0.9}],
    }
    for name, p in probs.items():
        group_cv_predictions(traces, labels, groups, lambda *_, p=p: lambda s: p, n_splits=2, cache_dir=tmp_path / name)
    report = sweep.merge(tmp_path, traces, labels, groups, splits=2)
    assert report["settings"]["a"]["accuracy"] == report["settings"]["b"]["accuracy"] == 0.5
    assert report["ensembles"]["all complete"]["members"] == ["a", "b"]
    assert report["ensembles"]["all complete"]["accuracy"] == 1.0
    assert report["settings"]["a"]["by_problem"] == {"p0": 0.5, "p1": 0.5}


def test_per_problem_hits_groups_the_sentences_of_each_problem():
    from thoughtlens.trace.label_eval import per_problem_hits

    preds = [["a", "b"], ["a"], ["c", "c", "c"]]
    labels = [["a", "a"], ["b"], ["c", "x", "c"]]
    hits = per_problem_hits(preds, labels, ["p1", "p0", "p1"], traces=[0, 2])  # trace 1 (p0) left out
    assert list(hits) == ["p1"] and hits["p1"].tolist() == [1, 0, 1, 0, 1]
    assert {g: h.tolist() for g, h in per_problem_hits(preds, labels, ["p1", "p0", "p1"], [0, 1, 2]).items()} == {
        "p0": [0.0],
        "p1": [1, 0, 1, 0, 1],
    }
