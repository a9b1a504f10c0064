"""Property: malformed published directories and problem files end in a one-line thoughtlens error, never a
traceback. Hypothesis builds the inputs (derandomized: the same cases on every run)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

from _published_fixture import valid_files, write_problem_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thoughtlens.anchors.attention.white_box import load_trace_file
from thoughtlens.anchors.importance.by_category import load_published
from thoughtlens.anchors.problems import load_problems
from thoughtlens.errors import ThoughtlensError
from thoughtlens.report.published import page_data_from_published

SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FILES = ("problem.json", "base_solution.json", "chunks_labeled.json", "chunks_resampled.json")


@st.composite
def file_content(draw, name: str):
    """A file of a published directory: left out, raw bytes, any JSON, or the valid one with one part replaced."""
    kind = draw(st.sampled_from(["valid", "missing", "bytes", "json", "mutate", "mutate", "mutate"]))
    valid = copy.deepcopy(valid_files()[name])
    if kind == "valid":
        return valid
    if kind == "missing":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "json":
        return draw(json_values)
    target = valid
    if isinstance(valid, list):  # chunks_labeled.json: mutate one chunk
        target = valid[draw(st.integers(0, len(valid) - 1))]
    key = draw(st.sampled_from(sorted(target) + ["extra"]))
    if draw(st.booleans()) and key in target:
        del target[key]
    else:
        target[key] = draw(json_values)
    return valid


@st.composite
def published_dirs(draw):
    return {name: draw(file_content(name)) for name in FILES}


def _write(root: Path, files: dict) -> Path:
    d = write_problem_dir(root, {})
    for name, value in files.items():
        if value is None:
            continue
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        (d / name).write_bytes(data)
    return d


def _ok_or_one_line_error(fn, *args, **kwargs):
    """fn succeeds, or raises a ThoughtlensError whose message is one non-empty line; anything else fails."""
    try:
        fn(*args, **kwargs)
    except ThoughtlensError as exc:
        msg = str(exc)
        assert msg.strip() and "\n" not in msg, repr(msg)


@SETTINGS
@given(files=published_dirs())
def test_malformed_published_directories_give_one_line_errors(files):
    with tempfile.TemporaryDirectory() as tmp:
        d = _write(Path(tmp), files)
        _ok_or_one_line_error(page_data_from_published, d, similarity=False)
        _ok_or_one_line_error(load_published, tmp)
        _ok_or_one_line_error(load_trace_file, d / "base_solution.json")


problem_records = st.dictionaries(
    st.sampled_from(["question", "answer", "problem", "gt_answer", "id", "problem_idx", "other"]),
    json_values,
    max_size=5,
)
jsonl_lines = st.one_of(
    problem_records.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=30).filter(lambda s: "\n" not in s),
    st.just(""),
    st.just(json.dumps({"question": "What is 2 + 3?", "answer": "#### 5"})),
)


@SETTINGS
@given(
    lines=st.lists(jsonl_lines, max_size=6),
    suffix=st.sampled_from([".jsonl", ".json"]),
    raw=st.none() | st.binary(max_size=30),
    limit=st.none() | st.integers(-1, 3),
)
def test_malformed_problem_files_give_one_line_errors(lines, suffix, raw, limit):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"problems{suffix}"
        if raw is not None:
            path.write_bytes(raw)
        elif suffix == ".jsonl":
            path.write_text("\n".join(lines), encoding="utf-8")
        else:
            path.write_text("[" + ",".join(line for line in lines if line.strip()) + "]", encoding="utf-8")
        try:
            problems = load_problems(path, limit)
        except ThoughtlensError as exc:
            assert str(exc).strip() and "\n" not in str(exc), repr(str(exc))
            return
        # What loads is usable: non-empty problem texts, string answers, unique ids.
        assert problems and all(isinstance(p["problem"], str) and p["problem"].strip() for p in problems)
        assert all(p["gt_answer"] is None or isinstance(p["gt_answer"], str) for p in problems)
        assert len({p["id"] for p in problems}) == len(problems)
