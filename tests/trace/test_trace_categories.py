"""The sentence taxonomy: the paper's eight categories plus unknown, definitions, tag validation."""

from __future__ import annotations

import json

import pytest

from thoughtlens.errors import TraceError
from thoughtlens.trace.categories import ALL_TAGS, CATEGORIES, TAXONOMY, UNKNOWN, category, first_tag, validate_tags

PAPER = {
    "problem_setup",
    "plan_generation",
    "fact_retrieval",
    "active_computation",
    "uncertainty_management",
    "result_consolidation",
    "self_checking",
    "final_answer_emission",
}


def test_taxonomy_is_the_papers_eight_categories_plus_unknown():
    assert set(CATEGORIES) == PAPER and len(CATEGORIES) == 8
    assert ALL_TAGS[-1] == UNKNOWN == "unknown"


def test_every_category_is_documented_with_examples():
    for c in TAXONOMY:
        assert c.definition.endswith(".") and len(c.definition) > 20
        assert c.examples and all(isinstance(e, str) and e for e in c.examples)
    assert category("self_checking").name == "self_checking"


def test_first_tag():
    assert first_tag(["plan_generation", "uncertainty_management"]) == "plan_generation"
    assert first_tag([]) == UNKNOWN and first_tag(None) == UNKNOWN


def test_unknown_tag_is_a_one_line_error_naming_tag_place_and_choices():
    with pytest.raises(TraceError) as info:
        validate_tags(["plan_generation", "backtracking"], where="file.json chunk 3")
    msg = str(info.value)
    assert "'backtracking'" in msg and "file.json chunk 3" in msg and "self_checking" in msg and "\n" not in msg
    with pytest.raises(TraceError, match="use one of"):
        category("planning")


def test_published_tags_are_all_in_the_taxonomy(published_problems):
    tags = {
        t
        for d in published_problems
        for c in json.loads((d / "chunks_labeled.json").read_text())
        for t in c["function_tags"]
    }
    assert tags == PAPER
