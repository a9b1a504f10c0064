"""Rollout prefixes at the token level: each prefix is a token prefix of the full trace, and the next
token of the full trace starts the removed sentence (no dangling space, no '.' where the model wrote
'.\\n\\n'); no double BOS. On the bundled model's tokenizer and an R1-Distill-like Qwen2 tokenizer."""

from __future__ import annotations

import pytest
from r1_like import CORPUS, r1_like_model_dir, r1_like_tokenizer

from thoughtlens.trace.reasoning_trace import ReasoningTrace

COMPLETION = CORPUS[0]


def _check_token_aligned(tok, trace: ReasoningTrace) -> None:
    full = tok(trace.text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = full["input_ids"], full["offset_mapping"]
    prefixes = trace.rollout_prefixes(tok)
    assert len(prefixes) == len(trace) + 1
    for k, prefix in enumerate(prefixes):
        got = tok(prefix, add_special_tokens=False)["input_ids"]
        assert got == ids[: len(got)], f"prefix {k} is not a token prefix of the trace"
        if k < len(trace):
            s = trace.sentences[k]
            # S_k is removed and nothing before it: only whitespace between the prefix and S_k ...
            assert trace.text[: s.start].startswith(prefix) and not trace.text[len(prefix) : s.start].strip(), k
            # ... and the trace's next token (the one a rollout must produce to rewrite the trace) is whitespace
            # or starts S_k: the boundary is one the model itself produced.
            a, b = offsets[len(got)]
            assert a == len(prefix) or not trace.text[len(prefix) : a].strip()
            assert not trace.text[a:b].strip() or (b > s.start and s.text.startswith(trace.text[a:b].strip()))
        else:
            assert prefix.rstrip() == trace.text[: trace.sentences[-1].end]


def test_bundled_tokenizer_prefixes_are_token_aligned(smol_tokenizer):
    prompt = smol_tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3 + 5 - 2?"}], tokenize=False, add_generation_prompt=True
    )
    trace = ReasoningTrace.parse(prompt, COMPLETION)
    _check_token_aligned(smol_tokenizer, trace)
    # The old prefix (text before S_k, trailing space kept) ends in a lone 'Ġ' token the model never wrote.
    old = [
        smol_tokenizer.convert_ids_to_tokens(
            smol_tokenizer(trace.prefix_before(k), add_special_tokens=False)["input_ids"]
        )[-1]
        for k in range(1, len(trace))
    ]
    assert "Ġ" in old


def test_tiny_model_with_the_bundled_tokenizer_encodes_prefixes_as_trace_tokens(tiny_lm):
    from thoughtlens.sample.hf import HFSampler

    tok = tiny_lm.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 3 + 5 - 2?"}], tokenize=False, add_generation_prompt=True
    )
    trace = ReasoningTrace.parse(prompt, COMPLETION)
    full = tiny_lm.to_tokens(trace.text)[0].tolist()
    sampler = HFSampler(tiny_lm)
    for prefix in trace.rollout_prefixes(tok):
        ids = sampler._encode(prefix)[0].tolist()  # what the hf backend feeds the model
        assert ids == full[: len(ids)]


def test_r1_like_tokenizer_prefixes_are_token_aligned_and_keep_fused_newlines():
    tok = r1_like_tokenizer()
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 3+5-2?"}], tokenize=False, add_generation_prompt=True
    )
    trace = ReasoningTrace.parse(prompt, COMPLETION)
    _check_token_aligned(tok, trace)
    # "eight.\n\nThen": the trace's token is '.\n\n', so the prefix keeps the newlines (the paper's strip
    # would end in '.', a token the model did not write there); without a tokenizer: the paper's rule.
    k = next(i for i, s in enumerate(trace.sentences) if s.text.startswith("Then"))
    assert trace.rollout_prefix(k, tok).endswith("eight.\n\n")
    assert trace.rollout_prefix(k).endswith("eight.")
    assert trace.rollout_prefix(0) == prompt  # before S_0 nothing is stripped: '<think>\n' stays


def test_no_tokenizer_is_the_papers_strip():
    trace = ReasoningTrace.parse("Q?\n", "First step is here. Second step is here.  \n\nThird step is here.")
    assert [trace.rollout_prefix(k) for k in range(1, 3)] == [
        trace.text[: s.start].rstrip() for s in trace.sentences[1:]
    ]
    assert trace.rollout_prefix(3) == trace.text[: trace.sentences[-1].end]
    with pytest.raises(Exception, match="out of range"):
        trace.rollout_prefix(4)


@pytest.mark.slow
def test_r1_like_model_encodes_prefixes_with_one_bos(tmp_path):
    import torch

    from thoughtlens import load
    from thoughtlens.sample.hf import HFSampler

    model = load(r1_like_model_dir(tmp_path / "r1"), dtype=torch.float32)
    tok = model.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 3+5-2?"}], tokenize=False, add_generation_prompt=True
    )
    trace = ReasoningTrace.parse(prompt, COMPLETION)
    full = tok(trace.text, add_special_tokens=False)["input_ids"]
    sampler = HFSampler(model)
    for prefix in trace.rollout_prefixes(tok):
        ids = sampler._encode(prefix)[0].tolist()
        assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
        assert ids == full[: len(ids)]
