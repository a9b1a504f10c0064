"""Malformed published Thought Anchors directories: every loader names the file, the key and the fix.

Loaders: the report page (`thoughtlens report --published DIR`), the category tables
(`anchors.importance.by_category.load_published`) and white-box trace files
(`anchors.attention.white_box.load_trace_file`).
"""

from __future__ import annotations

import copy

import pytest
from _badinput_cli import assert_one_line, assert_one_line_error, cli, files_under
from _published_fixture import valid_files, write_problem_dir

from thoughtlens.anchors.attention.white_box import load_trace_file
from thoughtlens.anchors.importance.by_category import load_published
from thoughtlens.errors import DataError, ThoughtlensError
from thoughtlens.report.published import page_data_from_published


def _mutated(name: str, change) -> dict:
    files = copy.deepcopy(valid_files())
    files[name] = change(files[name]) if callable(change) else change
    return files


def test_the_valid_fixture_loads_everywhere(tmp_path):
    """The mutations below are of a directory that loads: each failure is caused by the mutation alone."""
    d = write_problem_dir(tmp_path)
    data = page_data_from_published(d, similarity=False)
    assert [s["text"] for s in data["sentences"]] == [c["chunk"] for c in valid_files()["chunks_labeled.json"]]
    assert data["sentences"][0]["alternatives"] is not None  # chunks_resampled.json was read
    assert len(load_published(tmp_path)) == 3
    pid, trace, problem = load_trace_file(d / "base_solution.json")
    assert pid == "correct_base_solution/problem_1" and problem["gt_answer"] == "5" and len(trace.sentences) == 3


def _set(key, value):
    def change(obj):
        obj[key] = value
        return obj

    return change


def _chunk(i, key, value):
    def change(chunks):
        chunks[i][key] = value
        return chunks

    return change


# (file, mutation, texts the one-line message must contain)
MALFORMED = [
    ("problem.json", [1, 2], ["problem.json", "JSON object"]),
    ("problem.json", _set("problem", {"text": "x"}), ["problem.json", "'problem'", "a string"]),
    ("problem.json", _set("gt_answer", ["5"]), ["problem.json", "'gt_answer'"]),
    ("base_solution.json", "just a string", ["base_solution.json", "JSON object"]),
    ("base_solution.json", _set("solution", 42), ["base_solution.json", "'solution'"]),
    ("base_solution.json", _set("is_correct", "yes"), ["base_solution.json", "'is_correct'"]),
    ("chunks_labeled.json", {"0": "First."}, ["chunks_labeled.json", "non-empty list"]),
    ("chunks_labeled.json", [], ["chunks_labeled.json", "non-empty list"]),
    ("chunks_labeled.json", ["First.", "Then."], ["chunks_labeled.json", "chunk 0", "object"]),
    ("chunks_labeled.json", _chunk(1, "chunk", 7), ["chunks_labeled.json", "chunk 1", "'chunk'"]),
    (
        "chunks_labeled.json",
        _chunk(1, "function_tags", "self_checking"),
        ["chunks_labeled.json", "'function_tags'", "list of strings"],
    ),
    ("chunks_labeled.json", _chunk(2, "accuracy", "high"), ["chunks_labeled.json", "chunk 2", "'accuracy'", "number"]),
    (
        "chunks_labeled.json",
        _chunk(0, "counterfactual_importance_kl", [0.1]),
        ["chunks_labeled.json", "'counterfactual_importance_kl'"],
    ),
    ("chunks_labeled.json", _chunk(1, "chunk_idx", 0), ["chunks_labeled.json", "repeats chunk_idx 0"]),
    ("chunks_labeled.json", _chunk(1, "chunk_idx", -1), ["chunks_labeled.json", "'chunk_idx'"]),
    ("chunks_labeled.json", _chunk(1, "depends_on", [{"idx": 0}]), ["chunks_labeled.json", "'depends_on'"]),
    # The case: chunks_resampled.json holding lists of objects instead of lists of strings.
    ("chunks_resampled.json", {"0": [{"chunk": "Alt."}]}, ["chunks_resampled.json", "list of strings"]),
    ("chunks_resampled.json", [{"chunk": "Alt."}], ["chunks_resampled.json", "sentence index -> list of sentences"]),
    ("chunks_resampled.json", {"first": ["Alt."]}, ["chunks_resampled.json", "'first'"]),
]
IDS = [f"{f}:{i}" for i, (f, _, _) in enumerate(MALFORMED)]


@pytest.mark.parametrize("name, change, needles", MALFORMED, ids=IDS)
def test_report_page_loader_names_file_key_and_fix(tmp_path, name, change, needles):
    d = write_problem_dir(tmp_path, _mutated(name, change))
    with pytest.raises(DataError) as info:
        page_data_from_published(d, similarity=False)
    msg = assert_one_line(info.value, *needles)
    assert "re-download" in msg or "pass " in msg


@pytest.mark.parametrize(
    "name, change, needles",
    [m for m in MALFORMED if m[0] == "chunks_labeled.json"],
    ids=[i for i, m in zip(IDS, MALFORMED) if m[0] == "chunks_labeled.json"],
)
def test_category_loader_names_file_key_and_fix(tmp_path, name, change, needles):
    write_problem_dir(tmp_path, _mutated(name, change))
    with pytest.raises(DataError) as info:
        load_published(tmp_path)
    assert_one_line(info.value, *needles)


@pytest.mark.parametrize(
    "name, change, needles",
    [m for m in MALFORMED if m[0] in ("problem.json", "base_solution.json")],
    ids=[i for i, m in zip(IDS, MALFORMED) if m[0] in ("problem.json", "base_solution.json")],
)
def test_trace_file_loader_names_file_key_and_fix(tmp_path, name, change, needles):
    d = write_problem_dir(tmp_path, _mutated(name, change))
    with pytest.raises(DataError) as info:
        load_trace_file(d / "base_solution.json")
    assert_one_line(info.value, *needles)


def test_trace_file_without_prompt_names_the_keys(tmp_path):
    d = write_problem_dir(tmp_path, _mutated("base_solution.json", {"solution": "x"}))
    with pytest.raises(DataError) as info:
        load_trace_file(d / "base_solution.json")
    assert_one_line(info.value, "'prompt'", "needs keys 'prompt' and 'solution'")


@pytest.mark.parametrize("name", ["problem.json", "base_solution.json", "chunks_labeled.json", "chunks_resampled.json"])
@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b""], ids=["broken", "binary", "empty"])
def test_unreadable_file_names_the_file(tmp_path, name, content):
    d = write_problem_dir(tmp_path, raw={name: content})
    with pytest.raises(DataError) as info:
        page_data_from_published(d, similarity=False)
    assert_one_line(info.value, name, "cannot read")


# ---- the CLI: `thoughtlens report --published DIR` --------------------------------------------------------


@pytest.mark.parametrize("missing", ["problem.json", "base_solution.json", "chunks_labeled.json"])
def test_cli_report_missing_file(tmp_path, missing):
    d = write_problem_dir(tmp_path / "data", {**valid_files(), missing: None})
    result = cli("report", "--published", d, "-o", tmp_path / "out" / "page.html", "--no-similarity")
    assert_one_line_error(result, f"lacks {missing}")
    assert not (tmp_path / "out").exists()  # no page, not even its folder


@pytest.mark.parametrize(
    "name, change, needles", [MALFORMED[-3], MALFORMED[10], MALFORMED[11]], ids=["issue-20", "tags", "accuracy"]
)
def test_cli_report_malformed_file_is_one_line_not_a_traceback(tmp_path, name, change, needles):
    d = write_problem_dir(tmp_path / "data", _mutated(name, change))
    result = cli("report", "--published", d, "-o", tmp_path / "out" / "page.html", "--no-similarity")
    assert_one_line_error(result, *needles)
    assert files_under(tmp_path / "data") == sorted(f"correct_base_solution/problem_1/{n}" for n in valid_files())
    assert not (tmp_path / "out").exists()


def test_cli_categories_malformed_published_dir(tmp_path):
    write_problem_dir(tmp_path, _mutated("chunks_labeled.json", _chunk(2, "accuracy", "high")))
    result = cli("anchors", "categories", "--published", tmp_path, "--n-boot", "10")
    assert_one_line_error(result, "chunks_labeled.json", "'accuracy'")


def test_errors_are_thoughtlens_errors():
    assert issubclass(DataError, ThoughtlensError)
