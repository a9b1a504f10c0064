"""Per-sentence activations vs full caches; character spans to tokens; caching and export."""

from __future__ import annotations

import numerics
import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import random_tokens, tiny_hf
from transformers import PreTrainedTokenizerFast

from thoughtlens import HookedModel
from thoughtlens.errors import ConfigError, HookError, TraceError
from thoughtlens.represent.sentence_activations import SentenceActivations, collect, sentence_activations, token_ranges

RANGES = [(1, 6), (6, 6), (7, 15), (15, 22)]  # sentence 1 has no tokens


@pytest.fixture(scope="module")
def model():
    return HookedModel(tiny_hf("llama"), tokenizer=_word_tokenizer())


def _word_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[UNK]", "</s>", "so", "the", "answer", "is", "two", "wait", "maybe", "three", "no", "."]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>", pad_token="</s>")


def test_means_and_last_tokens_equal_the_full_cache(model):
    tokens = random_tokens(1, 30)
    acts = sentence_activations(
        model, tokens, RANGES, hooks=["resid_post", "blocks.1.hook_attn_out"], meta={"trace_id": "t0"}
    )
    _, cache = model.run_with_cache(tokens)
    assert acts.hooks == [f"blocks.{L}.hook_resid_post" for L in range(3)] + ["blocks.1.hook_attn_out"]
    for i, name in enumerate(acts.hooks):
        full = cache[name][0]  # [pos, d]
        for s, (a, b) in enumerate(RANGES):
            if a == b:
                assert np.isnan(acts.values["mean"][i, s]).all() and np.isnan(acts.values["last"][i, s]).all()
                continue
            # (not bit-equal: the streamed forward stops at the last sentence token, a shorter matmul): fp32
            # rounding through the model's 3 layers, a mean at its mean |term|, a token at its own size
            numerics.assert_close(
                acts.values["mean"][i, s],
                full[a:b].mean(0),
                dtype=torch.float32,
                depth=3,
                scale=float(full[a:b].abs().mean(0).max()),
            )
            numerics.assert_close(acts.values["last"][i, s], full[b - 1], dtype=torch.float32, depth=3)
    assert list(acts.meta["trace_id"]) == ["t0"] * 4 and list(acts.meta["sentence_index"]) == [0, 1, 2, 3]


def test_the_forward_stops_after_the_last_hooked_layer(model):
    ran = []
    with model.hooks([("blocks.2.hook_resid_pre", lambda x, hook: ran.append(hook.name))]):
        sentence_activations(model, random_tokens(1, 30), RANGES, hooks="blocks.0.hook_resid_post")
    assert ran == []  # layer 2 never ran (and no logits were computed)


def test_character_spans_map_to_the_tokens_that_start_inside_them(model):
    text = "so the answer is two. wait maybe three. no."
    spans = [(0, 21), (22, 39), (40, 43)]
    tokens, ranges = token_ranges(model, text, spans)
    words = [model.tokenizer.decode([t]) for t in tokens[0]]
    assert [words[a:b] for a, b in ranges] == [
        ["so", "the", "answer", "is", "two", "."],
        ["wait", "maybe", "three", "."],
        ["no", "."],
    ]
    _, cut = token_ranges(model, text, spans, max_tokens=8)
    assert cut == [(0, 6), (6, 8), (8, 8)]  # cut inside sentence 1; sentence 2 past the cut is empty


def test_collect_resumes_from_its_cache_and_exports(model, tmp_path, monkeypatch):
    text = "so the answer is two. wait maybe three. no."
    spans = [(0, 21), (22, 39), (40, 43)]
    meta = pd.DataFrame({"category": ["a", "b", "a"], "text": ["x", "y", "z"]})
    items = [("p1/trace", text, spans, meta), ("p2/trace", text[:21], spans[:1], {"category": "a"})]
    first = collect(model, items, hooks="resid_post", cache_dir=tmp_path)

    def boom(*a, **k):
        raise AssertionError("the model ran although every trace was cached")

    monkeypatch.setattr(model.hf_model.base_model, "forward", boom)
    again = collect(model, items, hooks="resid_post", cache_dir=tmp_path)
    for r in ("mean", "last"):
        np.testing.assert_array_equal(again.values[r], first.values[r])
    assert list(again.meta["trace_id"]) == ["p1/trace"] * 3 + ["p2/trace"]
    assert list(again.meta["category"]) == ["a", "b", "a", "a"]
    first.to_parquet(tmp_path / "acts.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "acts.parquet")
    col = np.array(table.column("mean:blocks.2.hook_resid_post").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(col, first.get(2))
    assert table.column("category").to_pylist() == ["a", "b", "a", "a"]


def test_bad_input_gets_one_line_errors(model):
    tokens = random_tokens(1, 30)
    with pytest.raises(ConfigError, match="unknown reductions"):
        sentence_activations(model, tokens, RANGES, reductions=["max"])
    with pytest.raises(HookError, match="attention patterns"):
        sentence_activations(model, tokens, RANGES, hooks="pattern")
    with pytest.raises(HookError, match="unknown hook name"):
        sentence_activations(model, tokens, RANGES, hooks="blocks.0.hook_resid_psot")
    with pytest.raises(TraceError, match="outside the 30 tokens"):
        sentence_activations(model, tokens, [(0, 31)])
    acts = sentence_activations(model, tokens, RANGES, hooks="resid_post")
    with pytest.raises(ConfigError, match="layer 7 is not among the collected layers"):
        acts.get(7)
    with pytest.raises(ConfigError, match="meta has 2 rows for 4 sentences"):
        sentence_activations(model, tokens, RANGES, meta=pd.DataFrame({"x": [1, 2]}))
    with pytest.raises(ConfigError, match="different widths"):
        sentence_activations(model, tokens, RANGES, hooks=["blocks.0.hook_resid_post", "blocks.0.mlp.hook_post"])
    with pytest.raises(ConfigError, match="different hooks"):
        SentenceActivations.concat([acts, sentence_activations(model, tokens, RANGES, hooks="resid_pre")])
