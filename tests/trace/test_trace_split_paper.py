"""split_sentences(style="paper"): the paper's chunking (utils.py:split_solution_into_chunks) with offsets.
Hand-checked cases for each of its rules; the 20 published traces are checked in
tests/anchors/importance/test_anchors_published_relations.py."""

from __future__ import annotations

import pytest

from thoughtlens.trace.split import first_sentence, paper_chunks, split_sentences


def _texts(text):
    return [text[a:b] for a, b in split_sentences(text, style="paper")]


def test_cuts_inside_latex_and_after_list_markers_like_the_paper():
    text = "We need $x = 3. y$ here. Steps:\n1. Compute the inner sum now"
    # pieces: "We need $x = 3." | "y$ here." | "Steps:\n1." | "Compute ..."; "y$ here." (8 characters)
    # is merged into the next piece, joined by a space
    assert _texts(text) == ["We need $x = 3.", "y$ here. Steps:\n1.", "Compute the inner sum now"]
    assert paper_chunks(text) == ["We need $x = 3.", "y$ here. Steps:\n1.", "Compute the inner sum now"]


def test_only_an_exact_blank_line_is_a_paragraph_break():
    assert _texts("First line is long\n\nSecond line is long") == ["First line is long", "Second line is long"]
    # a line holding a space is not a paragraph break for the paper (no cut at all here)
    assert _texts("First line is long\n \nSecond line is long") == ["First line is long\n \nSecond line is long"]


def test_short_pieces_merge_forward_and_the_last_one_backward():
    text = "Wait. Let me check this again. Yes."
    assert paper_chunks(text) == ["Wait. Let me check this again. Yes."]
    assert _texts(text) == [text]
    assert paper_chunks("A fairly long sentence here. Ok.") == ["A fairly long sentence here. Ok."]


def test_decimals_and_final_sentence():
    assert _texts("The rate is 6.17 percent here. The end has no stop") == [
        "The rate is 6.17 percent here.",
        "The end has no stop",
    ]


def test_offsets_are_exact_and_merged_chunks_join_with_a_space():
    text = "  Short.\nAnother sentence follows here.  "
    ((a, b),) = split_sentences(text, style="paper")
    assert text[a:b] == "Short.\nAnother sentence follows here."
    assert paper_chunks(text) == ["Short. Another sentence follows here."]


def test_first_sentence_paper_style_keeps_only_the_reasoning():
    text = "So we add them. Then we check\n</think>\nThe answer is 7."
    assert first_sentence(text, style="paper") == "So we add them."
    # a short tail before </think> is merged backwards, as the paper does
    assert first_sentence("So we add them. Then\n</think>\nThe answer is 7.", style="paper") == "So we add them. Then"
    assert first_sentence("", style="paper") == ""


def test_unknown_style_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown split style 'nltk'"):
        split_sentences("a. b.", style="nltk")
