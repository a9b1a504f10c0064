"""When a rollout is complete, and how a forced answer is read: one test per rule."""

from __future__ import annotations

import pytest

from thoughtlens.anchors.config import AnchorsConfig
from thoughtlens.anchors.importance.black_box import (
    answer_complete,
    completion_rule,
    forced_answer_complete,
    read_forced_answer,
)
from thoughtlens.errors import ConfigError

# ---- reasoning (think-block) rollouts


def test_a_hedged_boxed_guess_inside_think_does_not_end_the_rollout():
    assert not answer_complete("Maybe it is \\boxed{7}", thinking=True)
    assert answer_complete("Maybe it is \\boxed{7}")  # a non-thinking model: today's rule


def test_an_answer_is_sentence_inside_think_does_not_end_the_rollout():
    assert not answer_complete("Let me guess: the answer is 7.\n", thinking=True)


def test_closing_think_without_an_answer_is_not_complete():
    assert not answer_complete("So 7 it is.\n</think>\n\nThe total", thinking=True)


def test_an_answer_after_the_think_block_completes_the_rollout():
    assert answer_complete("Maybe \\boxed{5}? No.\n</think>\n\nThe answer is \\boxed{7}", thinking=True)


def test_an_answer_is_number_after_think_waits_for_its_end():
    assert not answer_complete("ok\n</think>\nThe answer is 2", thinking=True)
    assert not answer_complete("ok\n</think>\nThe answer is 2.", thinking=True)  # could become 2.5
    assert answer_complete("ok\n</think>\nThe answer is 2.5.\n", thinking=True)


def test_completion_rule_uses_the_configured_close_tag():
    rule = completion_rule(True, "</reasoning>")
    assert not rule("x </think> \\boxed{1}") and rule("x </reasoning> \\boxed{1}")
    assert completion_rule(False)("so \\boxed{1}")


# ---- forced answers: read whole, with nested and escaped braces


@pytest.mark.parametrize(
    "text, answer",
    [
        ("-\\frac{5}{12}}.", "-\\frac{5}{12}"),
        ("\\sqrt{\\frac{1}{2}}} and more", "\\sqrt{\\frac{1}{2}}"),
        ("\\{1,2\\}} done", "\\{1,2\\}"),
        ("42}", "42"),
    ],
)
def test_forced_answers_with_nested_braces_are_read_whole(text, answer):
    assert read_forced_answer(text) == answer
    assert forced_answer_complete(text)
    # the old reading stopped at the first '}'
    assert text.split("}")[0].strip() != answer or answer == "42"


def test_unbalanced_forced_answer_is_incomplete_and_unread():
    assert not forced_answer_complete("-\\frac{5}{12")
    assert read_forced_answer("-\\frac{5}{12") is None
    assert read_forced_answer(" }") is None  # empty box: no answer


# ---- the run config records the conventions


def test_config_resolves_and_records_conventions():
    paper, old = AnchorsConfig(), AnchorsConfig(conventions="thoughtlens")
    assert (paper.conventions, paper.kl_alpha) == ("paper", 1e-9)
    assert (old.conventions, old.kl_alpha) == ("thoughtlens", 0.5)
    assert AnchorsConfig(kl_alpha=0.5).kl_alpha == 0.5
    assert paper.run_id() != old.run_id()
    with pytest.raises(ConfigError, match="unknown conventions 'both'.*paper"):
        AnchorsConfig(conventions="both")
    with pytest.raises(ConfigError, match="split style"):
        AnchorsConfig(split_style="nltk")
    with pytest.raises(ConfigError, match="kl_alpha"):
        AnchorsConfig(kl_alpha=0.0)
