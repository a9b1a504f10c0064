"""Answer extraction, normalisation and equivalence (string, numeric, sympy) on hand cases and real data."""

from __future__ import annotations

import json
import re
import time

import pytest

from thoughtlens.trace import answers
from thoughtlens.trace.answers import answers_equivalent, extract_answer, normalize_answer

# ---------------------------------------------------------------- extraction


def test_last_boxed_with_nested_braces():
    text = r"First guess \boxed{3}. Actually the answer is \boxed{\frac{1}{2}} and that is final."
    assert extract_answer(text) == r"\frac{1}{2}"
    assert extract_answer(r"\boxed{\left(\frac{3}{4}, \infty\right)}", "boxed") == r"\left(\frac{3}{4}, \infty\right)"


def test_unclosed_boxed_is_skipped_for_the_last_complete_one():
    assert extract_answer(r"so \boxed{12} ... then \boxed{\frac{1}{") == "12"
    assert extract_answer(r"truncated \boxed{\frac{1}{") is None


def test_escaped_braces_and_fbox():
    assert extract_answer(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert extract_answer(r"\fbox{7}") == "7"


def test_gsm8k_hash_answer_with_commas():
    assert extract_answer("He pays 3 * 400 = <<3*400=1200>>1,200 dollars.\n#### 1,200", "gsm8k") == "1,200"
    assert normalize_answer(extract_answer("#### 1,234,567")) == "1234567"


def test_auto_prefers_boxed_then_gsm8k_then_answer_is():
    assert extract_answer("#### 5\n\\boxed{6}") == "6"
    assert extract_answer("blah\n#### 5") == "5"
    assert extract_answer("So the answer is 42.") == "42"
    assert extract_answer("The answer is: $1,250.") == "1,250"


def test_custom_regex_with_and_without_group():
    assert extract_answer("ANSWER=7; later ANSWER=9", re.compile(r"ANSWER=(\d+)")) == "9"
    assert extract_answer("tokens A1 B2 C3", re.compile(r"[A-Z]\d")) == "C3"


def test_no_extractable_answer_is_none_not_an_error():
    assert extract_answer("I am not sure, let me think more about it") is None
    assert extract_answer("") is None
    assert extract_answer("#### \n") is None


def test_unknown_style_is_a_clear_error():
    with pytest.raises(ValueError, match="use 'auto', 'boxed', 'gsm8k'"):
        extract_answer(r"\boxed{1}", "latex")


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("$5$", "5"),
        (r"\$12.50", "12.5"),
        (r"\text{August}", "August"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\frac12", r"\frac{1}{2}"),
        ("x = 5", "5"),
        (r"p(5) = -\frac{5}{12}", r"-\frac{5}{12}"),
        ("2x + 1 = 5", "2x+1=5"),  # a real equation is not cut at "="
        ("42.", "42"),
        ("007", "7"),
        ("3.50", "3.5"),
        (".5", "0.5"),
        ("6.17\\%", "6.17"),
        ("90^\\circ", "90"),
        ("5.8 cm", "5.8"),
        (r"19 \text{ bits}", "19"),
        ("2x", "2x"),  # not a unit
        ("2{,}016{,}532", "2016532"),
        ("1,2", "1,2"),  # a pair, not a thousands separator
        (r"\left( \frac{3}{4}, \infty \right)", r"(\frac{3}{4},\infty)"),
        (None, ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize_answer(raw) == expected


# ---------------------------------------------------------------- equivalence


@pytest.mark.parametrize(
    "a, b",
    [
        ("1/2", "0.5"),
        (r"\frac{1}{2}", "0.5"),
        (r"-\dfrac{5}{12}", r"-\frac{5}{12}"),
        ("1,000", "1000"),
        ("x=3", "3.0"),
        ("25%", "25.00"),
    ],
)
def test_equivalent_without_sympy(a, b, monkeypatch):
    monkeypatch.setattr(answers, "_sympy_equal", lambda a, b: pytest.fail("sympy should not be needed"))
    assert answers_equivalent(a, b)


def test_not_equivalent():
    assert not answers_equivalent("1/3", "0.333")
    assert not answers_equivalent("2864", "2865")
    assert not answers_equivalent(r"\frac{289}{259}", r"-\frac{289}{259}")
    assert not answers_equivalent(None, "1")
    assert not answers_equivalent("", "")


def test_parse_latex_works_in_this_environment():
    from sympy import simplify, sqrt
    from sympy.parsing.latex import parse_latex

    assert simplify(parse_latex(r"2\sqrt{2}") - sqrt(8)) == 0


def test_sympy_fallback_actually_runs(monkeypatch):
    calls = []
    real = answers._sympy_difference_is_zero
    monkeypatch.setattr(answers, "_sympy_difference_is_zero", lambda a, b: calls.append((a, b)) or real(a, b))
    assert answers_equivalent(r"2\sqrt{2}", r"\sqrt{8}")  # neither a plain number nor the same string
    assert answers_equivalent("x^2+2x+1", "(x+1)^2")
    assert not answers_equivalent(r"3\sqrt{2}", r"\sqrt{8}")
    assert len(calls) == 3  # every one of the three was decided by sympy


def test_sympy_fallback_cannot_hang(monkeypatch):
    monkeypatch.setattr(answers, "_SYMPY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(answers, "_sympy_difference_is_zero", lambda a, b: time.sleep(5) or True)
    started = time.monotonic()
    assert not answers_equivalent(r"\sqrt{2}", r"\sqrt{3}")
    assert time.monotonic() - started < 1.0


def test_sympy_errors_count_as_not_equal():
    assert not answers_equivalent(r"\frac{", r"\sqrt{")
    assert not answers_equivalent("[2\\sqrt{2},4]", "(2\\sqrt{2},4)")


# The paper's grader marked "y = \dfrac{x^2}{4} - 1" wrong against gt "\frac{x^2}{4} - 1"; we
# drop a one-letter left-hand side ("y = "), so we judge it right: a deliberate difference.
_KNOWN_DISAGREEMENTS = {(r"\frac{x^2}{4} - 1", r"y = \dfrac{x^2}{4} - 1")}


@pytest.mark.slow
def test_published_correct_and_incorrect_answers(shared_data):
    """selected_problems.json lists, per MATH problem, the model's answers the paper judged
    correct and incorrect; our equivalence must agree with those judgements."""
    problems = json.loads((shared_data / "thought-anchors" / "selected_problems.json").read_text())
    disagreements = set()
    for p in problems:
        gt = p["gt_answer"]
        assert answers_equivalent(gt, gt), gt
        disagreements |= {(gt, c) for c in p["correct_answers"] if not answers_equivalent(c, gt)}
        disagreements |= {(gt, c) for c in p["incorrect_answers"] if answers_equivalent(c, gt)}
    assert len(problems) == 106
    assert disagreements == _KNOWN_DISAGREEMENTS


def test_gsm8k_answers_extract_to_their_integer(shared_data):
    rows = [
        json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines() if line.strip()
    ]
    assert len(rows) == 1319
    for row in rows:
        expected = int(row["answer"].rsplit("####", 1)[1].strip().replace(",", ""))  # independent parse
        found = extract_answer(row["answer"])
        assert normalize_answer(found) == str(expected), row["answer"][-40:]
        assert answers_equivalent(found, f"{expected}.0")


def test_last_number_style_takes_the_final_number_in_prose():
    from thoughtlens.trace.answers import extract_answer

    assert extract_answer("so the total number of bolts is 1 + 2 = 3 bolts.", "last_number") == "3"
    assert extract_answer("she earns 1,250 dollars, then -7.5", "last_number") == "-7.5"
    assert extract_answer("no digits here", "last_number") is None
    assert extract_answer("the total is 3 bolts.", "auto") is None  # lenient style is opt-in only
