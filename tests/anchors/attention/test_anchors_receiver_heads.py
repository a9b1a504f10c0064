"""Receiver heads: vertical scores and kurtosis by hand, a hand-built receiver head, the store and the CLI."""

from __future__ import annotations

import json

import numerics
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast
from typer.testing import CliRunner

from thoughtlens import HookedModel
from thoughtlens.anchors.attention.receiver_heads import (
    ReceiverHead,
    find_receiver_heads,
    head_kurtosis,
    rank_heads,
    receiver_scores,
    split_half_r,
    vertical_scores,
)
from thoughtlens.anchors.attention.sentence_attention import sentence_attention
from thoughtlens.anchors.attention.white_box import analyze_attention, load_trace_file
from thoughtlens.errors import TraceError
from thoughtlens.trace.reasoning_trace import ReasoningTrace

# ---- vertical scores and kurtosis against hand computation ----------------------------------------------

A6 = np.arange(36, dtype=float).reshape(6, 6)  # A[q, k] = 6q + k


def test_vertical_scores_by_hand():
    # proximity_ignore=2: sentence k is scored by queries q >= k + 2.
    # k=0: q=2..5 -> 6*(2+3+4+5)/4 = 21; k=1: q=3..5 -> 6*4 + 1 = 25; k=2: q=4,5 -> 27 + 2 = 29; k=3: q=5 -> 33.
    got = vertical_scores(A6, proximity_ignore=2)
    np.testing.assert_allclose(got[:4], [21, 25, 29, 33])
    assert np.isnan(got[4]) and np.isnan(got[5])  # no query far enough


def test_vertical_scores_skip_nan_and_keep_leading_axes():
    a = np.stack([A6, A6.copy()])
    a[1, 3, :] = np.nan  # a zero-token query sentence
    got = vertical_scores(a, proximity_ignore=2)
    assert got.shape == (2, 6)
    np.testing.assert_allclose(got[1, :2], [6 * (2 + 4 + 5) / 3, 6 * (4 + 5) / 2 + 1])


def test_control_depth_ranks_each_row_by_hand():
    a = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0.5, 0, 0, 0], [0.1, 0.7, 0, 0.0]], dtype=float)
    # proximity 2: row 2 counts k=0 only -> rank 1/1; row 3 counts k=0 (0.1), k=1 (0.7) -> ranks 1/2, 2/2.
    got = vertical_scores(a, proximity_ignore=2, control_depth=True)
    np.testing.assert_allclose(got[:2], [(1.0 + 0.5) / 2, 1.0])


def test_head_kurtosis_matches_moment_formula():
    x = np.array([0.1, 0.2, 0.15, 0.9, 0.12, np.nan, 0.11])
    v = x[np.isfinite(x)]
    m2, m4 = np.mean((v - v.mean()) ** 2), np.mean((v - v.mean()) ** 4)
    got = head_kurtosis(np.stack([x, np.full(7, 0.3)]))  # second head: constant -> NaN
    assert got[0] == pytest.approx(m4 / m2**2 - 3)
    assert np.isnan(got[1])


def test_rank_heads_excludes_layer0_and_nan():
    k = np.array([[99.0, 1.0], [3.0, np.nan], [5.0, 4.0]])
    top = rank_heads(k, top_k=3)
    assert [(h.layer, h.head) for h in top] == [(2, 0), (2, 1), (1, 0)]
    assert [(h.layer, h.head) for h in rank_heads(k, top_k=1, exclude_layers=())] == [(0, 0)]


def test_receiver_scores_mean_over_heads():
    vert = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    got = receiver_scores(vert, [ReceiverHead(1, 2, 0.0), (0, 0)])
    np.testing.assert_allclose(got, (vert[1, 2] + vert[0, 0]) / 2)


def test_split_half_r_is_pearson_of_even_and_odd_means():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(4, 3, 5))
    even, odd = k[[0, 2], 1:].mean(0).ravel(), k[[1, 3], 1:].mean(0).ravel()
    assert split_half_r(k) == pytest.approx(np.corrcoef(even, odd)[0, 1])
    assert split_half_r(k[:1]) is None  # one trace: undefined


def test_fewer_sentences_than_proximity_ignore_is_a_clear_error():
    with pytest.raises(TraceError, match="3 sentences, not more than proximity_ignore=4"):
        vertical_scores(np.ones((3, 3)), proximity_ignore=4)


# ---- a hand-built receiver head ---------------------------------------------------------------------------

MARKER = 7


def _marker_model() -> HookedModel:
    """Tiny fp32 Llama whose layer 1, head 0 attends to MARKER tokens and (almost) nothing else.

    Residual dim 0 is set only for MARKER; dim 1 is a constant 1 for every token. Head 0's query reads
    dim 1 and its key reads dim 0, both into head dim 3, whose RoPE frequency is ~0 (rope_theta 1e12),
    so the score is large for MARKER keys at any distance. Every attention and MLP output is zeroed so
    the residual stream stays the embedding and the construction holds in every layer.
    """
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        rope_theta=1e12,
    )
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.ndim >= 2:
                p.mul_(5.0)
        emb = hf.model.embed_tokens.weight
        emb[:, 0] = 0.0
        emb[:, 1] = 1.0
        emb[MARKER, 0] = 3.0
        for layer in hf.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        attn = hf.model.layers[1].self_attn
        attn.q_proj.weight[0:8].zero_()
        attn.k_proj.weight[0:8].zero_()
        attn.q_proj.weight[3, 1] = 60.0
        attn.k_proj.weight[3, 0] = 60.0
    return HookedModel(hf)


def _marker_trace(seed: int, marker_sentence: int, n_sentences: int = 14, length: int = 4):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(10, 97, (1 + n_sentences * length,), generator=g)  # never MARKER
    ranges = [(1 + i * length, 1 + (i + 1) * length) for i in range(n_sentences)]
    a, b = ranges[marker_sentence]
    tokens[a:b] = MARKER
    return tokens, ranges


def test_hand_built_receiver_head_ranks_first():
    model = _marker_model()
    verticals = []
    for seed, marker in [(1, 2), (2, 5), (3, 3)]:
        tokens, ranges = _marker_trace(seed, marker)
        vert = vertical_scores(sentence_attention(model, tokens, ranges))
        assert np.nanargmax(vert[1, 0]) == marker  # the head's vertical scores peak on the marker sentence
        verticals.append(vert)
    result = find_receiver_heads(verticals, top_k=5)
    assert (result.top[0].layer, result.top[0].head) == (1, 0)
    assert result.top[0].kurtosis > result.top[1].kurtosis + 1.0
    assert result.kurtosis.shape == (3, 4) and result.per_trace_kurtosis.shape == (3, 3, 4)


# ---- analyze_attention, the store and the CLI ------------------------------------------------------------

WORDS = [
    "the",
    "answer",
    "is",
    "wait",
    "so",
    "we",
    "need",
    "to",
    "check",
    "compute",
    "x",
    "plus",
    "two",
    "equals",
    "four",
    "then",
    "but",
    "maybe",
    "a",
    "sum",
    "of",
    "first",
    "let",
    "me",
    "think",
    "okay",
    "yes",
    "no",
]


def _word_tokenizer() -> PreTrainedTokenizerFast:
    """A fast word-level tokenizer built in memory (offset mapping works; no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS + [".", "?", "<think>", "</think>", ":"])}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def _text_trace(seed: int, n: int = 9) -> ReasoningTrace:
    rng = np.random.default_rng(seed)
    sentences = [" ".join(rng.choice(WORDS, size=rng.integers(3, 7))) + "." for _ in range(n)]
    return ReasoningTrace.parse(
        "question : x plus two ? <think>", " " + " ".join(sentences) + " </think> the answer is four."
    )


def _tiny_text_model(n_ctx: int = 128) -> HookedModel:
    from tiny_models import tiny_hf

    hf = tiny_hf("llama")
    hf.config.max_position_embeddings = n_ctx  # RoPE is computed per position: only the declared context changes
    return HookedModel(hf, tokenizer=_word_tokenizer())


def _kurtosis_by_hand(row: np.ndarray) -> float:
    """Fisher kurtosis m4 / m2^2 - 3 with population moments over the finite entries; NaN if undefined."""
    v = row[np.isfinite(row)]
    if len(v) < 2 or np.ptp(v) == 0:
        return np.nan
    d = v - v.mean()
    return float(np.mean(d**4) / np.mean(d**2) ** 2 - 3)


def test_analyze_attention_writes_what_the_report_reads(tmp_path):
    from thoughtlens.store.run_store import RunStore

    model = _tiny_text_model()
    traces = {"p0": _text_trace(0), "p1": _text_trace(1), "p2": _text_trace(2, n=7)}
    store = RunStore(tmp_path / "s.sqlite")
    result = analyze_attention(model, traces, store=store, run_id="wb", top_k=4, n_head_matrices=2, max_tokens=60)
    heads = store.get_artifact("wb", "receiver_heads")
    assert [(h["layer"], h["head"]) for h in heads] == [(h.layer, h.head) for h in result.receiver.top]
    assert all(h["layer"] != 0 for h in heads) and len(heads) == 4
    # Kurtosis per trace and head by the moment formula (Fisher, biased, NaN omitted), from the float64 vertical
    # scores; then the split-half r: Pearson over heads outside layer 0 between the even (p0, p2) and odd (p1)
    # traces' mean kurtosis.
    per_trace = np.stack([np.apply_along_axis(_kurtosis_by_hand, -1, result.traces[pid].vertical) for pid in traces])
    want_kurtosis = np.nanmean(per_trace, axis=0)
    stored_kurtosis = store.get_artifact("wb", "receiver_head_kurtosis")
    assert stored_kurtosis.shape == (3, 4) and np.array_equal(np.isnan(stored_kurtosis), np.isnan(want_kurtosis))
    finite = np.isfinite(want_kurtosis)
    depth = max(len(t.sentences) for t in traces.values())  # sums over a trace's sentences
    numerics.assert_close(
        stored_kurtosis[finite], want_kurtosis[finite], dtype=torch.float64, depth=depth, msg="receiver_head_kurtosis"
    )
    even, odd = np.nanmean(per_trace[0::2, 1:], axis=0).ravel(), np.nanmean(per_trace[1::2, 1:], axis=0).ravel()
    ok = np.isfinite(even) & np.isfinite(odd)
    assert ok.sum() >= 3 and np.ptp(even[ok]) > 0 and np.ptp(odd[ok]) > 0  # r is defined here
    want_r = np.corrcoef(even[ok], odd[ok])[0, 1]
    r = store.get_artifact("wb", "receiver_split_half_r")
    assert r is not None
    numerics.assert_close(
        np.float64(r), want_r, dtype=torch.float64, depth=depth, scale=1.0, msg="receiver_split_half_r"
    )
    for pid, trace in traces.items():
        n = len(trace.sentences)
        vert = store.get_artifact("wb", "vertical_scores", pid)
        got_vert = result.traces[pid].vertical
        # stored: the float64 scores rounded to float32, NaN for the sentences cut by max_tokens
        assert np.array_equal(vert[..., : got_vert.shape[-1]], got_vert.astype(np.float32), equal_nan=True)
        assert np.all(np.isnan(vert[..., got_vert.shape[-1] :]))
        scores = store.get_artifact("wb", "receiver_scores", pid)
        assert vert.shape == (3, 4, n) and scores.shape == (n,)
        # receiver score recomputed from the stored vertical scores and head list
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):  # last sentences: all NaN
            want = np.nanmean(np.stack([vert[h["layer"], h["head"]] for h in heads]), axis=0)
        np.testing.assert_allclose(scores, want, rtol=1e-5, equal_nan=True)
        supp = store.get_artifact("wb", "suppression_matrix", pid)
        j, k = np.indices((n, n))
        assert supp.shape == (n, n) and np.all(np.isnan(supp[k <= j])) and np.isfinite(supp[0, 1])
        top = store.get_artifact("wb", "sentence_attention_top_heads", pid)
        assert len(top) == 2 and len(top[0]["matrix"]) == n
        stored = store.trace("wb", pid)
        assert [s["text"] for s in stored["sentences"]] == [s.text for s in trace.sentences]
    from thoughtlens.report.from_store import page_data_from_store

    page = page_data_from_store(store, "wb", "p0", similarity=False)
    assert page["matrices"]["suppression"] is not None and page["matrices"]["receiver_head_kurtosis"] is not None


def test_analyze_attention_refuses_short_traces():
    model = _tiny_text_model()
    with pytest.raises(TraceError, match=r"trace 'short' has \d sentences, not more than proximity_ignore=4"):
        analyze_attention(model, {"short": _text_trace(0, n=3)})


def test_cli_published_trace(tmp_path, published_problems):
    from thoughtlens.cli import app
    from thoughtlens.store.run_store import RunStore

    model_dir = tmp_path / "model"
    model = _tiny_text_model(n_ctx=1024)
    model.hf_model.save_pretrained(model_dir)
    model.tokenizer.save_pretrained(model_dir)
    paths = [str(p / "base_solution.json") for p in published_problems[:2]]
    out = tmp_path / "out.sqlite"
    args = [
        "anchors",
        "attention",
        "--trace",
        paths[0],
        "--trace",
        paths[1],
        "--model",
        str(model_dir),
        "--store",
        str(out),
        "--max-tokens",
        "400",
        "--top-k",
        "3",
        "--no-suppression",
        "--dtype",
        "fp32",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "receiver heads over 2 traces" in res.output and "split-half" in res.output
    store = RunStore(out)
    pid = f"{published_problems[0].parent.name}/{published_problems[0].name}"
    problem = json.loads((published_problems[0] / "problem.json").read_text())
    assert store.problems("attention").set_index("problem_id").loc[pid, "problem"] == problem["problem"]
    assert len(store.get_artifact("attention", "receiver_heads")) == 3
    # STORE mode re-analyses the stored traces (now with suppression) into the same run
    res = CliRunner().invoke(
        app,
        [
            "anchors",
            "attention",
            str(out),
            "--model",
            str(model_dir),
            "--max-tokens",
            "250",
            "--top-k",
            "3",
            "--dtype",
            "fp32",
        ],
    )
    assert res.exit_code == 0, res.output
    assert store.get_artifact("attention", "suppression_matrix", pid).ndim == 2


@pytest.mark.parametrize(
    "args, match",
    [
        ([], "exactly one"),
        (["missing.sqlite"], "no run store at missing.sqlite"),
        (["--trace", "missing.json"], "no trace file at missing.json"),
    ],
)
def test_cli_bad_input(args, match, tmp_path, monkeypatch):
    from thoughtlens.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["anchors", "attention", *args])
    assert res.exit_code != 0 and match in " ".join(res.output.split())


def test_load_trace_file_rejects_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"a": 1}')
    with pytest.raises(TraceError, match="needs keys 'prompt' and 'solution'"):
        load_trace_file(p)


def test_analyze_attention_with_the_approximate_suppression_method(tmp_path):
    """suppression_method="direct_grad" stores the first-order estimate (not the exact matrix) and says so in
    suppression_meta; the estimate itself is tested in tests/anchors/attention/test_anchors_suppression_approx.py."""
    from thoughtlens.anchors.attention.suppression import suppression_matrix
    from thoughtlens.anchors.attention.white_box import trace_tokens
    from thoughtlens.store.run_store import RunStore

    model = _tiny_text_model()
    traces = {"p0": _text_trace(0), "p1": _text_trace(1)}
    store = RunStore(tmp_path / "s.sqlite")
    seen = []
    analyze_attention(
        model,
        traces,
        store=store,
        run_id="wb",
        top_k=4,
        max_tokens=60,
        suppression_method="direct_grad",
        on_progress=seen.append,
    )
    tt = trace_tokens(model, traces["p0"], 60)
    exact = suppression_matrix(model, tt.tokens, tt.ranges)
    n = len(traces["p0"].sentences)
    supp = store.get_artifact("wb", "suppression_matrix", "p0")[: len(tt.ranges), : len(tt.ranges)]
    assert store.get_artifact("wb", "suppression_meta", "p0")["method"] == "direct_grad"
    assert store.get_artifact("wb", "suppression_matrix", "p0").shape == (n, n)
    assert np.array_equal(np.isfinite(supp), np.isfinite(exact))  # same defined cells ...
    assert not np.allclose(supp[np.isfinite(supp)], exact[np.isfinite(exact)])  # ... not the exact values
    done = [e for e in seen if getattr(e, "task", None) == "attention suppression"]
    assert done and done[-1].completed == done[-1].total  # the progress bar reaches its end


def test_analyze_attention_refuses_an_unknown_method_or_heads_with_an_estimate():
    from thoughtlens.errors import ConfigError

    model = _tiny_text_model()
    with pytest.raises(ConfigError, match="unknown suppression_method 'fast': use one of exact, direct_grad"):
        analyze_attention(model, {"p0": _text_trace(0)}, suppression_method="fast")
    with pytest.raises(ConfigError, match="suppression_heads needs suppression_method='exact'"):
        analyze_attention(model, {"p0": _text_trace(0)}, suppression_method="direct_grad", suppression_heads=[(1, 0)])


def test_cli_refuses_an_unknown_suppression_method_before_the_model_load(tmp_path):
    from thoughtlens.anchors.attention.suppression_approx import APPROX_METHODS
    from thoughtlens.anchors.run_options import SUPPRESSION_METHODS
    from thoughtlens.cli import app

    assert SUPPRESSION_METHODS == ("exact", *APPROX_METHODS)  # the CLI's list is the library's
    res = CliRunner().invoke(
        app,
        [
            "anchors",
            "attention",
            "--trace",
            "x.json",
            "--model",
            str(tmp_path / "none"),
            "--suppression-method",
            "fast",
        ],
    )
    assert res.exit_code == 1
    assert "unknown --suppression-method 'fast': use one of exact, direct_grad, grad_loglik" in " ".join(
        res.output.split()
    )
