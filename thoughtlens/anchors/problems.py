"""Reading problems: GSM8K jsonl (`question`, `answer` ending in `#### N`), the paper's MATH json
(`problem`, `gt_answer`), or one problem given on the command line.

Every malformed file gives one DataError naming the file, the line/record, the key and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from thoughtlens.errors import ConfigError, DataError
from thoughtlens.trace.answers import extract_answer

_FIX = "fix that line or regenerate the file"


def load_problems(path: str | Path, limit: int | None = None) -> list[dict]:
    """[{id, problem, gt_answer}] from a .jsonl or .json file (a list, or a dict of problems).

    A record is an object with a non-empty string 'problem' (or 'question'); 'gt_answer' (or a GSM8K
    'answer' ending in '#### N') is a string or number; 'id' / 'problem_idx', when given, is a string or
    integer, unique in the file. limit: the first N problems (N >= 1), None for all.
    """
    path = Path(path)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"--limit must be an integer >= 1, got {limit!r}: pass e.g. --limit 5")
    if not path.is_file():
        raise DataError(f"problems file {path} does not exist: check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(
            f"cannot read problems file {path} ({' '.join(str(e).split())}): save it as UTF-8 text"
        ) from None
    records = _records(path, text)
    problems, ids = [], {}
    for i, (where, r) in enumerate(records[:limit] if limit else records):
        problems.append(_problem(path, i, where, r, ids))
    if not problems:
        raise DataError(f"{path} holds no problems: add one JSON object per line with a 'problem' or 'question' key")
    return problems


def _records(path: Path, text: str) -> list[tuple[str, object]]:
    """(where, record) pairs: where is 'line N' (jsonl, 1-based, blank lines skipped) or 'record N' (json)."""
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                out.append((f"line {n}", _loads(path, line, f"line {n}")))
        return out
    data = _loads(path, text, None)
    if isinstance(data, dict):
        data = list(data.values())
    if not isinstance(data, list):
        raise DataError(
            f"{path} must hold a list (or an object) of problems, got {type(data).__name__}: "
            'write [{"problem": ..., "gt_answer": ...}, ...]'
        )
    return [(f"record {i}", r) for i, r in enumerate(data)]


def _loads(path: Path, text: str, where: str | None):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = where or f"line {e.lineno}"
        raise DataError(f"{path}: {at} is not valid JSON ({e.msg}): {_FIX}") from None
    except RecursionError:
        raise DataError(f"{path}: {where or 'the file'} nests too deeply to be a problem: {_FIX}") from None


def _problem(path: Path, i: int, where: str, r: object, ids: dict[str, str]) -> dict:
    if not isinstance(r, dict):
        raise DataError(f"{path}: {where} is not an object; expected keys question/answer or problem/gt_answer")
    key = "problem" if "problem" in r else "question"
    text = r.get(key)
    if not isinstance(text, str) or not text.strip():
        got = "missing" if text is None else ("blank" if isinstance(text, str) else f"a {type(text).__name__}")
        raise DataError(
            f"{path}: {where} has no usable '{key}' field ({got}): give it the problem text as a non-empty string"
        )
    gt = r.get("gt_answer")
    if gt is None and r.get("answer") is not None:
        answer = r["answer"]
        if not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
            raise DataError(
                f"{path}: {where} key 'answer' must be a string or number, got {type(answer).__name__}: {_FIX}"
            )
        gt = extract_answer(str(answer), "gsm8k") or str(answer)
    if gt is not None and (not isinstance(gt, (str, int, float)) or isinstance(gt, bool)):
        raise DataError(f"{path}: {where} key 'gt_answer' must be a string or number, got {type(gt).__name__}: {_FIX}")
    raw_id = r.get("id", r.get("problem_idx"))
    if raw_id is not None and (not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or str(raw_id) == ""):
        raise DataError(f"{path}: {where} key 'id' must be a non-empty string or an integer, got {raw_id!r}: {_FIX}")
    pid = str(raw_id) if raw_id is not None else f"{path.stem}-{i}"
    if pid in ids:
        # Rollouts are stored per problem id: two problems under one id would mix their rollouts.
        raise DataError(
            f"{path}: {where} repeats problem id {pid!r} (first at {ids[pid]}): give every problem a unique 'id'"
        )
    ids[pid] = where
    return {"id": pid, "problem": text, "gt_answer": None if gt is None else str(gt)}
