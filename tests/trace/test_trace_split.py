"""Sentence splitter: hand-checked cases, exact offsets, and agreement with the paper's published splits."""

from __future__ import annotations

import json
import re

import pytest

from thoughtlens.trace.split import split_sentences


def _texts(text: str, **kw) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text, **kw)]


def test_plain_sentences_and_final_sentence_kept():
    text = "First we add the numbers. Then we divide by two? Yes! The result is seven"
    assert _texts(text) == ["First we add the numbers.", "Then we divide by two?", "Yes! The result is seven"]


def test_offsets_are_exact_and_whitespace_preserved():
    text = "  Alpha beta gamma.\n\n  Delta epsilon zeta.   Eta theta iota!  \n"
    spans = split_sentences(text)
    assert spans == [(2, 19), (23, 42), (45, 60)]  # counted by hand
    for s, e in spans:  # prefix + sentence + rest reproduces the text exactly
        assert text[:s] + text[s:e] + text[e:] == text
        assert text[s:e] == text[s:e].strip()


def test_decimals_do_not_end_sentences():
    assert _texts("The rate is 6.17 percent per year. It compounds 12.5 times.") == [
        "The rate is 6.17 percent per year.",
        "It compounds 12.5 times.",
    ]


def test_abbreviations_do_not_end_sentences():
    text = "First, the problem says Dr. Fu Manchu has an account. Use a rule, e.g. the product rule, here."
    assert _texts(text) == [
        "First, the problem says Dr. Fu Manchu has an account.",
        "Use a rule, e.g. the product rule, here.",
    ]


def test_numbered_list_items_are_sentences_and_markers_are_not_cut():
    text = "We proceed in steps:\n1. Compute the inner sum\n2. Multiply it by three\n3. Add one to the result"
    assert _texts(text) == [
        "We proceed in steps:",
        "1. Compute the inner sum",
        "2. Multiply it by three",
        "3. Add one to the result",
    ]


def test_latex_math_is_never_cut():
    text = r"We need $x = 3. y$ here. Then \[ a = 1. \quad b = 2. \] holds. Also \( 4! = 24 \) too."
    assert _texts(text) == [
        r"We need $x = 3. y$ here.",
        r"Then \[ a = 1. \quad b = 2. \] holds.",
        r"Also \( 4! = 24 \) too.",
    ]


def test_currency_dollars_are_not_math():
    # "$5. Then $" must not be read as inline math, or the sentence boundary after "$5." is lost.
    assert _texts("The pen costs $5. Then the book costs $12 more.") == [
        "The pen costs $5.",
        "Then the book costs $12 more.",
    ]


def test_blank_line_paragraphs_split_but_single_newlines_do_not():
    text = "**Final Answer**\nThe value is 42\n\nNext paragraph starts here"
    assert _texts(text) == ["**Final Answer**\nThe value is 42", "Next paragraph starts here"]


def test_short_pieces_merge_into_next_and_last_into_previous():
    text = "Wait. Let me check that again. Hmm. Okay, that works."
    assert _texts(text) == ["Wait. Let me check that again.", "Hmm. Okay, that works."]
    # A merged piece that is still short keeps merging: "Hmm. Ok." (8 chars) joins the previous one.
    assert _texts("Let me check that again. Hmm. Ok.") == ["Let me check that again. Hmm. Ok."]
    assert _texts("This is a long sentence. No.") == ["This is a long sentence. No."]
    assert _texts("Wait. Hmm.", min_chars=10) == ["Wait. Hmm."]
    assert _texts("Wait. Hmm.", min_chars=0) == ["Wait.", "Hmm."]


def test_start_end_restrict_to_a_slice_and_offsets_stay_absolute():
    text = "PROMPT. <think>One sentence here. Another sentence here.</think> answer."
    start, end = text.index(">") + 1, text.index("</think>")
    assert split_sentences(text, start, end) == [(15, 33), (34, 56)]
    assert text[15:33] == "One sentence here."


def test_all_whitespace_gives_no_sentences():
    assert split_sentences("  \n\n \t ") == []
    assert split_sentences("") == []


def test_bad_span_is_a_clear_error():
    with pytest.raises(ValueError, match="0 <= start <= end <= len"):
        split_sentences("abc", 2, 10)


def _published_boundaries(solution: str, chunks: list[str]) -> list[int]:
    """Start offsets of the paper's chunks in `solution`. Their chunks were re-joined with single
    spaces, so each is located with a whitespace-insensitive pattern, left to right."""
    pos, starts = 0, []
    for chunk in chunks:
        pattern = r"\s+".join(re.escape(word) for word in chunk.split())
        found = re.compile(pattern).search(solution, pos)
        assert found, f"published chunk not found in solution: {chunk[:60]!r}"
        starts.append(found.start())
        pos = found.end()
    return starts[1:]  # the first start is the start of the text, not a boundary


def test_matches_published_boundaries(published_problems):
    """On the 20 published traces: >= 95 % of their boundaries recovered, >= 90 % of ours are theirs."""
    theirs_total = ours_total = shared = 0
    for problem in published_problems:
        base = json.loads((problem / "base_solution.json").read_text())
        chunks = [c["chunk"] for c in json.loads((problem / "chunks_labeled.json").read_text())]
        solution = base["solution"]
        think_end = solution.find("</think>")
        theirs = set(_published_boundaries(solution, chunks))
        ours = {s for s, _ in split_sentences(solution, 0, think_end if think_end >= 0 else len(solution))[1:]}
        theirs_total, ours_total, shared = (
            theirs_total + len(theirs),
            ours_total + len(ours),
            shared + len(theirs & ours),
        )
    recall, precision = shared / theirs_total, shared / ours_total
    print(
        f"\nsplitter vs published: recall {recall:.4f} ({shared}/{theirs_total}), "
        f"precision {precision:.4f} ({shared}/{ours_total})"
    )
    assert len(published_problems) == 20
    assert recall >= 0.95
    assert precision >= 0.90
