"""The SAE feature panel's data for a stored run (sae/run_features.py), checked against an independent
computation: the hook activation from run_with_cache, the encoder formula written out, each sentence's token
range, a pandas sort for the run's top sentences, and the unembedding product for the logit effects."""

from __future__ import annotations

import numerics
import pandas as pd
import pytest
import torch

from thoughtlens.errors import SAEError
from thoughtlens.sae import build_sae
from thoughtlens.sae import run_features as rf
from thoughtlens.sae.features import top_activating_sentences
from thoughtlens.sae.run_features import store_run_features, stored_trace
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.reasoning_trace import ReasoningTrace

HOOK = "blocks.1.hook_resid_post"
STORED = 5e-6  # the store rounds values to 5 decimals: half a unit of the last one
RUN = "r"
TRACES = {
    "p0": ("Q: what is 2 + 3? <think>", "First, 2 plus 3 makes 5. Let me double check it. Yes, it is 5.</think> 5"),
    "p1": (
        "Q: what is 4 + 4? <think>",
        "Four and four. Adding them gives eight. Wait, check again. Eight it is.</think> 8",
    ),
}


def _sae(seed: int, d_model: int):
    torch.manual_seed(seed)
    return build_sae(architecture="standard", d_in=d_model, d_sae=40, hook_name=HOOK).eval()


def _store(path) -> RunStore:
    store = RunStore(path)
    store.create_run(RUN, {})
    for pid, (prompt, completion) in TRACES.items():
        t = ReasoningTrace.parse(prompt, completion)
        store.add_problem(RUN, pid, prompt, None)
        store.add_trace(
            RUN,
            pid,
            prompt,
            completion,
            t.answer,
            None,
            [{"index": s.index, "start": s.start, "end": s.end, "text": s.text} for s in t.sentences],
        )
    return store


def _independent_feats(model, sae, prompt, completion) -> torch.Tensor:
    """[S, d_sae]: max over each sentence's tokens of relu((x - b_dec) W_enc + b_enc), x from run_with_cache."""
    t = ReasoningTrace.parse(prompt, completion)
    tok = model.tokenizer
    ids = [tok.bos_token_id, *tok(t.text, add_special_tokens=False)["input_ids"]]
    _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=HOOK)
    latents = ((cache[HOOK][0] - sae.b_dec) @ sae.W_enc + sae.b_enc).clamp_min(0)
    return torch.stack([latents[a + 1 : b + 1].amax(0) for a, b in t.token_ranges(tok)]).detach()


def test_run_features_match_an_independent_computation(tiny_lm, tmp_path):
    sae = _sae(0, tiny_lm.cfg.d_model)
    store = _store(tmp_path / "run.sqlite")
    summary = store_run_features(
        tiny_lm,
        sae,
        store,
        top_per_sentence=3,
        top_sentences=4,
        n_tokens=5,
        labels={f: f"label <{f}>" for f in range(40)},
    )
    assert summary["problems"] == 2 and summary["skipped"] == 0
    feats = {pid: _independent_feats(tiny_lm, sae, *TRACES[pid]) for pid in TRACES}
    # float32 latents (the model's 2 layers, the encoder's difference and product) at their largest, plus storage
    close = STORED + numerics.tol(tiny_lm.dtype, max(numerics.magnitude(F) for F in feats.values()), depth=4)
    shown = set()
    for pid, F in feats.items():
        stored = store.get_artifact(RUN, "sae_sentence_features", pid)["sentences"]
        assert len(stored) == F.shape[0]
        for row, got in zip(F, stored):
            vals, ids = row.topk(3)
            assert [f for f, _ in got] == [int(i) for v, i in zip(vals, ids) if v > 0]
            assert [a for _, a in got] == pytest.approx([float(v) for v in vals if v > 0], abs=close)
            shown.update(f for f, _ in got)
    table = store.get_artifact(RUN, "sae_feature_table")
    assert set(map(int, table["features"])) == shown and table["problems"] == ["p0", "p1"]
    # A feature's top sentences across the run: every (problem, sentence) activation, sorted.
    texts = {pid: [s["text"] for s in store.trace(RUN, pid)["sentences"]] for pid in TRACES}
    rows = pd.DataFrame(
        [
            {"pid": pid, "s": i, "a": float(F[i, f]), "f": f}
            for pid, F in feats.items()
            for i in range(F.shape[0])
            for f in range(F.shape[1])
        ]
    )
    for f in sorted(shown)[:6]:
        want = rows[(rows.f == f) & (rows.a > 0)].sort_values("a", ascending=False, kind="stable").head(4)
        got = table["features"][str(f)]["top_sentences"]
        assert [(p, s) for p, s, _, _ in got] == list(zip(want.pid, want.s))
        assert [a for _, _, a, _ in got] == pytest.approx(list(want.a), abs=close)
        assert [t for p, s, _, t in got] == [texts[p][s] for p, s in zip(want.pid, want.s)]
    # The same ranking as features.top_activating_sentences (which recomputes every trace).
    f = sorted(shown)[0]
    traces = [stored_trace(store.trace(RUN, pid)) for pid in TRACES]
    ref = top_activating_sentences(tiny_lm, sae, traces, f, n=4)
    got = table["features"][str(f)]["top_sentences"]
    assert [t for *_, t in got] == list(ref["text"][ref["activation"] > 0])
    # Logit effects: W_U @ (W_dec[f] * final-norm weight), decoded.
    effects = tiny_lm.hf_model.lm_head.weight.detach() @ (
        sae.W_dec[f].detach() * tiny_lm.hf_model.model.norm.weight.detach()
    )
    up = effects.topk(5)
    entry = table["features"][str(f)]
    assert [t for t, _ in entry["up"]] == [tiny_lm.tokenizer.decode([int(i)]) for i in up.indices]
    # one product with the unembedding (rounding at its sum of |terms|), plus storage
    scale = numerics.magnitude(
        tiny_lm.hf_model.lm_head.weight.detach().abs()
        @ (sae.W_dec[f].detach() * tiny_lm.hf_model.model.norm.weight.detach()).abs()
    )
    assert [e for _, e in entry["up"]] == pytest.approx(
        up.values.tolist(), abs=STORED + numerics.tol(tiny_lm.dtype, scale, depth=2)
    )
    assert [t for t, _ in entry["down"]] == [tiny_lm.tokenizer.decode([int(i)]) for i in (-effects).topk(5).indices]
    assert all(entry["label"] == f"label <{f}>" for f, entry in table["features"].items())
    store.close()


def test_resumes_per_problem_and_recomputes_for_another_sae(tiny_lm, tmp_path, monkeypatch):
    sae = _sae(0, tiny_lm.cfg.d_model)
    store = _store(tmp_path / "run.sqlite")
    assert store_run_features(tiny_lm, sae, store, problem_ids=["p0"])["problems"] == 1
    table = store.get_artifact(RUN, "sae_feature_table")
    assert table["problems"] == ["p0"]
    calls = []
    real = rf.sentence_features
    monkeypatch.setattr(rf, "sentence_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    events = []
    summary = store_run_features(tiny_lm, sae, store, on_progress=events.append)  # p0 is done: only p1 runs
    assert (summary["problems"], summary["skipped"], len(calls)) == (1, 1, 1)
    assert any(e.note and "already had features" in e.note for e in events)
    assert store.get_artifact(RUN, "sae_feature_table")["problems"] == ["p0", "p1"]
    other = _sae(1, tiny_lm.cfg.d_model)  # other weights: nothing is reused
    assert store_run_features(tiny_lm, other, store)["problems"] == 2 and len(calls) == 3
    store.close()


def test_bad_input_is_one_line(tiny_lm, tmp_path):
    sae = _sae(0, tiny_lm.cfg.d_model)
    store = _store(tmp_path / "run.sqlite")
    with pytest.raises(SAEError, match="no problem 'nope'"):
        store_run_features(tiny_lm, sae, store, problem_ids=["nope"])
    with pytest.raises(SAEError, match="top_per_sentence must be a positive integer"):
        store_run_features(tiny_lm, sae, store, top_per_sentence=0)
    store.create_run("empty", {})
    store.add_problem("empty", "q", "What?", None)
    with pytest.raises(SAEError, match="no base trace"):
        store_run_features(tiny_lm, sae, store, "empty")
    wide = build_sae(architecture="standard", d_in=tiny_lm.cfg.d_model + 1, d_sae=8, hook_name=HOOK)
    with pytest.raises(SAEError):
        store_run_features(tiny_lm, wide, store, RUN)
    assert store.get_artifact(RUN, "sae_feature_table", default=None) is None  # nothing written half
    store.close()
