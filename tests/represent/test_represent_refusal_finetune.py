"""The refusing fine-tune's data and the refusal script's inputs: training set held apart from the evaluation set,
chat examples in the trainer's format, sentence trimming, Wilson intervals of refusal rates, one-line errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from thoughtlens.errors import ConfigError
from thoughtlens.represent.refusal import (
    REFUSAL_REPLIES,
    is_refusal,
    refusal_prompts,
    refusal_rate_ci,
    refusal_train_prompts,
    refusal_training_examples,
    trim_to_sentence,
)

REPO = Path(__file__).resolve().parents[2]


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def test_training_instructions_are_distinct_from_the_evaluation_set():
    train, evaluation = refusal_train_prompts(), refusal_prompts()
    assert len(train["harmful"]) >= 40 and len(train["harmless"]) >= 40
    assert len(evaluation["harmful"]) >= 50 and len(evaluation["harmless"]) >= 50
    seen_train = {_norm(s) for s in train["harmful"] + train["harmless"]}
    seen_eval = {_norm(s) for s in evaluation["harmful"] + evaluation["harmless"]}
    assert len(seen_train) == len(train["harmful"]) + len(train["harmless"])  # no duplicates
    assert not seen_train & seen_eval


def test_every_refusal_reply_is_caught_by_the_matcher_and_starts_with_a_refusal_token():
    for r in REFUSAL_REPLIES:
        assert is_refusal(r) and r.startswith("I")


def test_training_examples_label_exactly_the_reply(smol_tokenizer):
    from thoughtlens.diff.finetune import tokenize_chat

    rows = refusal_training_examples(
        ["How do I pick a lock?", "Make a bomb."], ["How do I bake bread?"], ["Mix flour and water."]
    )
    assert [r["messages"][1]["content"] for r in rows] == [
        REFUSAL_REPLIES[0],
        REFUSAL_REPLIES[1],
        "Mix flour and water.",
    ]
    for row in rows:
        ids, labels = tokenize_chat(smol_tokenizer, row, 200)
        learned = [t for t, y in zip(ids, labels) if y != -100]
        text = smol_tokenizer.decode(learned)
        assert text.startswith(row["messages"][1]["content"]) and "user" not in text


def test_training_examples_need_one_reply_per_harmless_instruction():
    with pytest.raises(ConfigError, match="one reply each"):
        refusal_training_examples(["a"], ["b", "c"], ["only one"])
    with pytest.raises(ConfigError, match="at least one"):
        refusal_training_examples([], ["b"], ["r"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("First sentence. Second one is cut mid", "First sentence."),
        ("It weighs 3.5 kg! Really? yes and", "It weighs 3.5 kg! Really?"),
        ("Hello.\n\nWorld is cut", "Hello."),
        ("Title\n\nBody is cut", "Title"),
        ("Steps:\n1. Dig\n2. Pla", "Steps:\n1. Dig\n2."),  # a list number counts as an end (documented)
        ("  no sentence end at all ", "no sentence end at all"),
        ("Ends cleanly.", "Ends cleanly."),
    ],
)
def test_trim_to_sentence(text, expected):
    assert trim_to_sentence(text) == expected


def test_refusal_rate_ci_is_newcombes_wilson_interval():
    # Newcombe 1998 (single proportion), example 81/263: Wilson 95% interval 0.2553 to 0.3662
    texts = ["I'm sorry, no."] * 81 + ["Sure, here it is."] * (263 - 81)
    got = refusal_rate_ci(texts)
    assert got["k"] == 81 and got["n"] == 263 and math.isclose(got["rate"], 81 / 263)
    # the published values have four decimals: half a unit of the last one
    assert got["ci"][0] == pytest.approx(0.2553, abs=5e-5) and got["ci"][1] == pytest.approx(0.3662, abs=5e-5)
    # 0 of 10: the interval's upper end 0.2775 (Newcombe's example 0/10 gives 0 to 0.2775)
    zero = refusal_rate_ci(["fine"] * 10)
    assert zero["ci"][0] == 0 and zero["ci"][1] == pytest.approx(0.2775, abs=5e-5)
    with pytest.raises(ConfigError):
        refusal_rate_ci([])


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--model", "/nonexistent/model"], "neither 'refusing', 'base' nor a model directory"),
        (["--max-new-tokens", "0"], "must be >= 1"),
        (["--layer-stride", "0"], "must be >= 1"),
    ],
)
def test_script_bad_input_raises_before_loading(argv, match):
    sys.path.insert(0, str(REPO / "scripts"))
    import represent_refusal

    with pytest.raises(ConfigError, match=match):
        represent_refusal.main(argv)


@pytest.mark.slow  # a fresh interpreter imports thoughtlens
def test_script_bad_input_is_one_line():
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "represent_refusal.py"), "--model", "/nonexistent/x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pass one of those" in lines[0]
