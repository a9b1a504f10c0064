"""The files of a published Thought Anchors problem directory, read with their shapes checked.

The paper's data (https://huggingface.co/datasets/uzaymacar/math-rollouts) holds, per problem:
  problem.json           {"problem": str, "gt_answer": str, "nickname": str, ...}
  base_solution.json     {"prompt": str, "solution": str, "answer": str, "is_correct": bool, ...}
  chunks_labeled.json    [{"chunk": str, "chunk_idx": int, "function_tags": [str], "depends_on": [str],
                           "accuracy": float, "<metric>": float, "summary": str}, ...]
  chunks_resampled.json  {"<chunk index>": [str, ...], ...}

Every loader of that data (report pages, category tables, white-box trace files) reads through these
functions, so a hand-edited or truncated file gives one DataError naming the file, the key and the fix,
never a KeyError/AttributeError traceback from deep inside an analysis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thoughtlens.errors import DataError

FIX = "re-download the published problem directory (or fix that entry)"


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def read_json(path: str | Path) -> Any:
    """The parsed JSON of `path`; DataError when it is missing, unreadable or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: {FIX}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"cannot read {path}: not valid JSON ({e.msg}, line {e.lineno}): {FIX}") from None
    except (OSError, UnicodeDecodeError, RecursionError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"cannot read {path}: {reason}: {FIX}") from None


def _check(path: Path, where: str, key: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise DataError(f"{path}: {where}key '{key}' must be {expected}, got {_kind(value)}: {FIX}")


def _optional_str(path: Path, where: str, record: dict, key: str) -> None:
    v = record.get(key)
    _check(path, where, key, v, v is None or isinstance(v, str), "a string")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _object(path: Path, data: Any, what: str) -> dict:
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object ({what}), got {_kind(data)}: {FIX}")
    return data


def read_problem(path: str | Path) -> dict:
    """problem.json: an object whose 'problem' and 'nickname' are strings and 'gt_answer' a string or number
    (a number is turned into its string)."""
    path = Path(path)
    data = _object(path, read_json(path), "problem, gt_answer, ...")
    for key in ("problem", "nickname", "level", "type", "gt_solution"):
        _optional_str(path, "", data, key)
    gt = data.get("gt_answer")
    _check(path, "", "gt_answer", gt, gt is None or isinstance(gt, str) or _number(gt), "a string or a number")
    if _number(gt):
        data = {**data, "gt_answer": str(gt)}
    return data


def read_base_solution(path: str | Path, *, require: tuple[str, ...] = ()) -> dict:
    """base_solution.json: an object with string 'prompt', 'solution', 'full_cot', 'answer' and a boolean
    'is_correct'; the keys in `require` must be present."""
    path = Path(path)
    data = _object(path, read_json(path), "prompt, solution, ...")
    missing = [k for k in require if k not in data]
    if missing:
        raise DataError(
            f"{path} lacks key(s) {', '.join(repr(k) for k in missing)} (needs keys "
            f"{' and '.join(repr(k) for k in require)}): pass a published base_solution.json or a plain-text trace"
        )
    for key in ("prompt", "solution", "full_cot"):
        if key in require:
            _check(path, "", key, data[key], isinstance(data[key], str), "a string")
        _optional_str(path, "", data, key)
    answer = data.get("answer")
    _check(
        path, "", "answer", answer, answer is None or isinstance(answer, str) or _number(answer), "a string or a number"
    )
    if _number(answer):
        data = {**data, "answer": str(answer)}
    ok = data.get("is_correct")
    _check(path, "", "is_correct", ok, ok is None or isinstance(ok, bool), "true, false or null")
    return data


def read_chunks_labeled(path: str | Path, metrics: tuple[str, ...] = ()) -> list[dict]:
    """chunks_labeled.json: a non-empty list of chunk objects, ordered by 'chunk_idx' (default: position).

    Per chunk: 'chunk' a string (required); 'chunk_idx' a non-negative integer, unique; 'function_tags' a
    list of strings; 'depends_on' a list of strings or integers; 'summary' a string; 'accuracy' and every
    name in `metrics` a number or null. Returned chunks always carry 'chunk_idx'.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise DataError(
            f"{path} must be a non-empty list of {{'chunk': ...}} records, got "
            f"{'an empty list' if data == [] else _kind(data)}: {FIX}"
        )
    chunks, seen = [], set()
    for i, c in enumerate(data):
        where = f"chunk {i}: "
        if not isinstance(c, dict):
            raise DataError(f"{path}: chunk {i} must be an object with key 'chunk', got {_kind(c)}: {FIX}")
        if "chunk" not in c:
            raise DataError(f"{path}: chunk {i} lacks key 'chunk' (the sentence text): {FIX}")
        _check(path, where, "chunk", c["chunk"], isinstance(c["chunk"], str), "a string")
        idx = c.get("chunk_idx", i)
        _check(
            path,
            where,
            "chunk_idx",
            idx,
            isinstance(idx, int) and not isinstance(idx, bool) and idx >= 0,
            "a non-negative integer",
        )
        if idx in seen:
            raise DataError(f"{path}: chunk {i} repeats chunk_idx {idx}: {FIX}")
        seen.add(idx)
        for key, of in (("function_tags", (str,)), ("depends_on", (str, int))):
            v = c.get(key)
            ok = v is None or (isinstance(v, list) and all(isinstance(x, of) and not isinstance(x, bool) for x in v))
            _check(path, where, key, v, ok, "a list of strings")
        _optional_str(path, where, c, "summary")
        for key in ("accuracy",) + tuple(metrics):
            v = c.get(key)
            _check(path, where, key, v, v is None or _number(v), "a number or null")
        chunks.append({**c, "chunk_idx": idx})
    return sorted(chunks, key=lambda c: c["chunk_idx"])


def read_chunks_resampled(path: str | Path) -> dict[str, list[str]]:
    """chunks_resampled.json: an object mapping a chunk index (string of digits) to a list of strings."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(
            f"{path} must map sentence index -> list of sentences (a JSON object), got {_kind(data)}: {FIX}"
        )
    for key, v in data.items():
        if not (key.isascii() and key.isdigit()):
            raise DataError(f'{path}: key {key!r} must be a sentence index such as "0": {FIX}')
        ok = v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        _check(path, f"sentence {key}: ", key, v, ok, "a list of strings")
    return data
