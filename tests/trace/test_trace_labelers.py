"""Sentence labellers: rules on hand-made sentences, the learned classifier (weights file, training,
leave-problems-out accuracy on the published traces), the LLM labeller's validation and retries
(fake client, then the real llama.cpp server)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thoughtlens.errors import ThoughtlensError, TraceError
from thoughtlens.trace.categories import ALL_TAGS, CATEGORIES
from thoughtlens.trace.label_learned import (
    EMBED_DIM,
    WEIGHTS_PATH,
    LearnedLabeler,
    load_weights,
    save_weights,
    sentence_features,
    train_classifier,
)
from thoughtlens.trace.label_llm import LabelingError, LLMLabeler, parse_labels
from thoughtlens.trace.label_rules import RuleLabeler, rule_label
from thoughtlens.trace.labelers import get_labeler, label, label_sentences


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("**Final Answer** The answer is \\boxed{3}.", "final_answer_emission"),
        ("Wait, that can't be right.", "uncertainty_management"),
        ("Let me check that again.", "self_checking"),
        ("Let me try the quadratic formula.", "plan_generation"),
        ("I remember that the area of a circle is pi r^2.", "fact_retrieval"),
        ("So, the total is 20 bits.", "result_consolidation"),
        ("3 * 4 = 12", "active_computation"),
        ("Okay, so I have this problem about plates on a table.", "problem_setup"),
        ("Blue sky.", "unknown"),
    ],
)
def test_rule_labeller_on_hand_made_sentences(sentence, expected):
    assert rule_label(sentence) == expected


def test_label_a_reasoning_trace_through_the_interface():
    from thoughtlens.trace.reasoning_trace import ReasoningTrace

    trace = ReasoningTrace.parse(
        "Q: 3 * 4?\n", "<think>Let me try multiplying. 3 * 4 = 12. Wait, is that right?</think> 12"
    )
    tags = label(trace, get_labeler("rules"))
    assert len(tags) == len(trace.sentences) >= 2
    assert tags[0] == ["plan_generation"] and all(t[0] in ALL_TAGS for t in tags)


def test_labeller_output_is_validated():
    class Broken:
        name = "broken"

        def label_sentences(self, sentences):
            return [["planning"] for _ in sentences]

    with pytest.raises(TraceError, match="'planning'.*broken"):
        label_sentences(["a."], Broken())

    class Short(Broken):
        def label_sentences(self, sentences):
            return []

    with pytest.raises(ThoughtlensError, match="0 tag lists for 1 sentences"):
        label_sentences(["a."], Short())


def test_get_labeler_errors_name_the_fix():
    with pytest.raises(ThoughtlensError, match="use one of: learned, rules, encoder, llm"):
        get_labeler("gpt")
    with pytest.raises(ThoughtlensError, match="needs a client"):
        get_labeler("llm")
    assert isinstance(get_labeler("rules"), RuleLabeler)


# ---- learned ---------------------------------------------------------------------------------------


def test_shipped_weights_are_small_safetensors_over_the_taxonomy():
    assert WEIGHTS_PATH.is_file() and WEIGHTS_PATH.stat().st_size < 300_000
    w = load_weights()
    assert set(w.classes) == set(CATEGORIES)
    assert w.weight.shape == (len(w.classes), sentence_features(["a"], np.zeros((1, EMBED_DIM))).shape[1])


def test_weights_round_trip_and_version_check(tmp_path):
    w = load_weights()
    path = tmp_path / "w.safetensors"
    save_weights(w, path)
    again = load_weights(path)
    assert again.classes == w.classes and np.array_equal(again.weight, w.weight)
    from safetensors.numpy import save_file

    save_file(
        {"weight": w.weight, "bias": w.bias},
        str(tmp_path / "old.safetensors"),
        metadata={"classes": json.dumps(list(w.classes)), "meta": json.dumps({"feature_version": 0})},
    )
    with pytest.raises(ThoughtlensError, match="retrain with scripts/train_category_classifier.py"):
        load_weights(tmp_path / "old.safetensors")
    with pytest.raises(ThoughtlensError, match="not found"):
        load_weights(tmp_path / "missing.safetensors")


def test_features_carry_position_and_neighbour_cues():
    sents = ["Let me think.", "Wait, 2 + 2 = 4?", "So 4."]
    f = sentence_features(sents, np.zeros((3, EMBED_DIM)))
    assert f[:, EMBED_DIM].tolist() == [0.0, 0.5, 1.0]  # relative position
    with pytest.raises(ThoughtlensError, match="embed the same sentences"):
        sentence_features(sents, np.zeros((2, EMBED_DIM)))


def test_training_separates_separable_data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 10)) * 3
    y = rng.integers(0, 3, 300)
    x = centres[y] + rng.normal(size=(300, 10)) * 0.3
    names = ["plan_generation", "active_computation", "self_checking"]
    w = train_classifier(x, [names[k] for k in y])
    pred = np.array(w.classes)[w.predict_proba(x).argmax(1)]
    assert (pred == np.array(names)[y]).mean() == 1.0
    assert w.classes == ("plan_generation", "active_computation", "self_checking")  # taxonomy order
    # two classes: the binary model must still predict through the softmax form
    two = train_classifier(x[y < 2], [names[k] for k in y[y < 2]])
    pred2 = np.array(two.classes)[two.predict_proba(x[y < 2]).argmax(1)]
    assert (pred2 == np.array(names)[y[y < 2]]).mean() == 1.0
    with pytest.raises(ThoughtlensError, match="fewer than 2 categories"):
        train_classifier(x[:5], ["plan_generation"] * 5)


def test_learned_labeller_with_a_fake_embedder():
    def fake(sents):
        return np.random.default_rng(len(sents)).normal(size=(len(sents), EMBED_DIM)).astype(np.float32)

    lab = LearnedLabeler(embedder=fake)
    tags = lab.label_sentences(["Okay, so I have this problem.", "Let me try x = 2.", "So x = 2."])
    assert len(tags) == 3 and all(len(t) == 1 and t[0] in CATEGORIES for t in tags)
    assert lab.label_sentences([]) == []


@pytest.mark.slow
def test_leave_problems_out_accuracy_beats_rules_and_majority(published_dir):
    """Measured (docs/validation.md): learned 0.575 / macro-F1 0.509, rules 0.454 / 0.438, majority 0.345."""
    from thoughtlens.anchors.importance.by_category import load_published
    from thoughtlens.trace.categories import first_tag
    from thoughtlens.trace.label_eval import cross_validated_predictions, majority_baseline, score_labels
    from thoughtlens.trace.label_learned import embed

    df = load_published(published_dir)
    groups_df = list(df.groupby("trace_id", sort=True))
    traces = [g.sort_values("sentence_index")["text"].tolist() for _, g in groups_df]
    labels = [[first_tag(t) for t in g.sort_values("sentence_index")["tags"]] for _, g in groups_df]
    groups = [tid.split("/")[-1] for tid, _ in groups_df]
    assert len(set(groups)) == 10 and len(traces) == 20
    embeddings = [embed(s) for s in traces]
    preds = cross_validated_predictions(traces, labels, embeddings, groups, n_splits=10)
    true = [t for ls in labels for t in ls]
    learned = score_labels(true, [t for p in preds for t in p])
    rules = score_labels(true, [t[0] for s in traces for t in RuleLabeler().label_sentences(s)])
    majority, share = majority_baseline(true)
    assert (majority, round(share, 3)) == ("active_computation", 0.345)
    assert learned.accuracy >= 0.55 and learned.macro_f1 >= 0.45
    assert learned.accuracy > rules.accuracy > share
    assert learned.confusion.to_numpy().sum() == 2885


# ---- LLM -------------------------------------------------------------------------------------------


class FakeClient:
    """Returns the scripted replies in order and records the messages it got."""

    def __init__(self, replies):
        self.replies, self.calls = list(replies), []

    def chat(self, messages, **params):
        self.calls.append((messages, params))
        return self.replies.pop(0)


def test_llm_labeller_retries_malformed_json_then_succeeds():
    client = FakeClient(
        [
            "Sure! Here are the labels: plan, compute",
            '```json\n{"0": ["plan_generation"], "1": "active_computation"}\n```',
        ]
    )
    lab = LLMLabeler(client, max_attempts=3)
    assert lab.label_sentences(["Let me try.", "2 + 2 = 4"]) == [["plan_generation"], ["active_computation"]]
    assert lab.attempts_used == 2 and len(client.calls) == 2
    retry_messages, params = client.calls[1]
    assert "invalid" in retry_messages[-1]["content"] and retry_messages[-2]["role"] == "assistant"
    assert params["response_format"] == {"type": "json_object"} and params["temperature"] == 0.0


def test_llm_labeller_gives_up_after_max_attempts():
    bad = ['{"0": ["planning"]}', '{"1": ["plan_generation"]}', "not json"]
    with pytest.raises(LabelingError, match="after 3 attempts"):
        LLMLabeler(FakeClient(bad), max_attempts=3).label_sentences(["a.", "b."])
    lab = LLMLabeler(FakeClient(["{}", "{}"]), max_attempts=2, on_failure="unknown")
    assert lab.label_sentences(["a.", "b."]) == [["unknown"], ["unknown"]]


@pytest.mark.parametrize(
    "reply, match",
    [
        ("no json here", "no JSON object"),
        ('{"0": ["plan_generation"],}', "not valid JSON"),
        ('["plan_generation"]', "no JSON object"),
        ('{"0": ["plan_generation"]}', "sentence 1 has no tag list"),
        ('{"0": ["plan_generation"], "1": ["backtracking"]}', "unknown tag 'backtracking'"),
        ('{"0": [], "1": ["self_checking"]}', "sentence 0 has no tag list"),
    ],
)
def test_parse_labels_rejects_malformed_replies(reply, match):
    with pytest.raises(LabelingError, match=match):
        parse_labels(reply, 2)


def test_parse_labels_accepts_several_tags_and_int_keys_as_strings():
    assert parse_labels('{"0": ["active_computation", "result_consolidation"], "1": ["unknown"]}', 2) == [
        ["active_computation", "result_consolidation"],
        ["unknown"],
    ]


@pytest.mark.server
@pytest.mark.slow
def test_llm_labeller_against_real_llama_cpp_server(llama_server):
    """The labeller's request reaches a real server and its reply comes back as the labels. SmolLM2-135M does
    not follow the JSON instructions by itself, so the request the labeller builds is forwarded with a JSON
    schema (llama.cpp turns it into a grammar) that only admits a valid labelling: the labels must then be
    exactly what the server wrote, from the taxonomy, on the first attempt."""
    from thoughtlens.sample.openai import OpenAIClient

    sentences = ["Okay, so I need to find 3 * 4.", "3 * 4 = 12.", "So the answer is 12."]
    tag_list = {"type": "array", "items": {"type": "string", "enum": list(ALL_TAGS)}, "minItems": 1, "maxItems": 2}
    schema = {
        "type": "object",
        "properties": {str(i): tag_list for i in range(len(sentences))},
        "required": [str(i) for i in range(len(sentences))],
        "additionalProperties": False,
    }
    client = OpenAIClient(llama_server, timeout=120, max_retries=1)
    calls, replies = [], []

    class Constrained:
        def chat(self, messages, **params):
            calls.append((messages, dict(params)))
            params["response_format"] = {**params["response_format"], "schema": schema}
            replies.append(client.chat(messages, **params))
            return replies[-1]

    lab = LLMLabeler(Constrained(), max_attempts=2, max_tokens=160)
    tags = lab.label_sentences(sentences)

    # The request the labeller built: the system prompt, every numbered sentence, JSON mode, greedy.
    messages, params = calls[0]
    assert messages[0]["role"] == "system" and "problem_setup" in messages[0]["content"]
    assert all(f"[{i}] {s}" in messages[1]["content"] for i, s in enumerate(sentences))
    assert params == {"temperature": 0.0, "max_tokens": 160, "response_format": {"type": "json_object"}}
    # The reply, read independently of the labeller's parser, is what the labeller returned.
    reply = json.loads(replies[0])
    assert tags == [reply[str(i)] for i in range(len(sentences))]
    assert all(t and set(t) <= set(ALL_TAGS) for t in tags)
    assert len(calls) == 1 and lab.attempts_used == 1
