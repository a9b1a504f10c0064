"""Page data from one published Thought Anchors problem directory:
problem.json, base_solution.json, chunks_labeled.json and (optional) chunks_resampled.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

from thoughtlens.errors import DataError
from thoughtlens.report.alternatives import (
    MAX_ALTERNATIVES,
    SIMILARITY_THRESHOLD,
    Embedder,
    alternatives_for_trace,
    minilm_embedder,
)
from thoughtlens.report.category_stats import categories_in, category_table, transition_matrix
from thoughtlens.report.outcome_labels import relabel_outcome
from thoughtlens.report.page_data import METRICS, SCHEMA, clean_number, fill_notes, metric_entries, validate_page_data
from thoughtlens.report.published_agentic import is_agentic, scenario_problem
from thoughtlens.trace.published_files import (
    read_base_solution,
    read_chunks_labeled,
    read_chunks_resampled,
    read_problem,
)

_REQUIRED = ("problem.json", "base_solution.json", "chunks_labeled.json")
_ANSWERS_NOTE = (
    "published data holds accuracy only: 'resampled' = rollouts resampled from this "
    "sentence, 'kept' = rollouts resampled from the next one (this sentence kept)"
)


def locate_chunks(text: str, chunks: list[str]) -> list[tuple[int, int]]:
    """[start, end) of each chunk in `text`, searched in order.

    The published chunks collapse runs of whitespace (newlines become spaces), so each chunk is
    matched with any whitespace between its words. A chunk that cannot be found gets the empty span
    at the current position, so later chunks still line up.
    """
    spans, pos = [], 0
    for chunk in chunks:
        words = chunk.split()
        pattern = re.compile(r"\s+".join(re.escape(w) for w in words)) if words else None
        match = pattern.search(text, pos) if pattern else None
        if match is None:
            spans.append((pos, pos))
            continue
        spans.append((match.start(), match.end()))
        pos = match.end()
    return spans


def _answers(accuracy: list[float | None], i: int) -> dict | None:
    """Binary correct/incorrect distribution, resampled at S_i vs kept (= resampled at S_{i+1})."""
    if i + 1 >= len(accuracy) or accuracy[i] is None or accuracy[i + 1] is None:
        return None
    dist = lambda p: {"correct": clean_number(p), "incorrect": clean_number(1 - p)}  # noqa: E731
    return {
        "kept": dist(accuracy[i + 1]),
        "resampled": dist(accuracy[i]),
        "n_kept": None,
        "n_resampled": None,
        "note": _ANSWERS_NOTE,
    }


def _sentences(text: str, chunks: list[dict]) -> list[dict]:
    spans = locate_chunks(text, [c["chunk"] for c in chunks])
    accuracy = [clean_number(c.get("accuracy")) for c in chunks]
    sentences = []
    for i, (c, (start, end)) in enumerate(zip(chunks, spans)):
        sentences.append(
            {
                "index": i,
                "start": start,
                "end": end,
                "text": c["chunk"],
                "tags": list(c.get("function_tags") or []),
                "summary": c.get("summary"),
                "metrics": {k: clean_number(c[k]) for k in METRICS if k in c},
                "ci": {},  # the published metrics come without CIs
                "depends_on": sorted(
                    {int(d) for d in c.get("depends_on") or [] if str(d).isascii() and str(d).isdigit()}
                ),
                "answers": _answers(accuracy, i),
                "alternatives": None,
            }
        )
    return sentences


def page_data_from_published(
    problem_dir: str | Path,
    *,
    similarity: bool = True,
    embed: Embedder | None = None,
    max_alternatives: int = MAX_ALTERNATIVES,
) -> dict:
    """Page data for one published problem directory (e.g. .../correct_base_solution/problem_1591).

    similarity: flag resampled alternatives similar/dissimilar with sentence embeddings (MiniLM unless
    `embed` is given; about 10-40 s on CPU for a whole trace); False leaves the flags out.
    """
    problem_dir = Path(problem_dir)
    if not problem_dir.is_dir():
        raise DataError(
            f"{problem_dir} is not a directory; pass a published problem directory "
            "such as .../deepseek-r1-distill-qwen-14b/correct_base_solution/problem_1591"
        )
    agentic = is_agentic(problem_dir)  # a blackmail scenario (scenario.json): report.published_agentic
    required = [n for n in _REQUIRED if not (agentic and n == "problem.json")]
    missing = [name for name in required if not (problem_dir / name).is_file()]
    if missing:
        raise DataError(
            f"{problem_dir} lacks {', '.join(missing)}; pass a published problem "
            "directory (problem.json, base_solution.json, chunks_labeled.json)"
        )
    # Shapes and types are checked file by file (DataError naming file, key and fix): see trace.published_files.
    base = read_base_solution(problem_dir / "base_solution.json")
    if agentic:
        problem, graded = scenario_problem(problem_dir, base)
    else:
        problem = read_problem(problem_dir / "problem.json")
        graded = {"answer": base.get("answer"), "is_correct": base.get("is_correct")}
    chunks = read_chunks_labeled(problem_dir / "chunks_labeled.json", tuple(METRICS))
    text = base.get("solution") or ""
    sentences = _sentences(text, chunks)
    resampled_path = problem_dir / "chunks_resampled.json"
    if resampled_path.is_file():
        _attach_alternatives(sentences, read_chunks_resampled(resampled_path), similarity, embed, max_alternatives)
    categories = categories_in(sentences)
    metric_keys = [k for k in METRICS if any(s["metrics"].get(k) is not None for s in sentences)]
    pid = f"{problem_dir.parent.name}/{problem_dir.name}"
    data = {
        "schema": SCHEMA,
        "title": f"{problem.get('nickname') or problem_dir.name} ({pid})",
        "source": str(problem_dir),
        "problem": {"id": pid, "text": problem.get("problem", ""), "gt_answer": problem.get("gt_answer")},
        "trace": {"text": text, "answer": graded["answer"], "is_correct": graded["is_correct"]},
        "categories": categories,
        "metrics": metric_entries(set(metric_keys)),
        "sentences": sentences,
        "similarity_threshold": SIMILARITY_THRESHOLD if similarity else None,
        "matrices": {
            "suppression": None,
            "counterfactual": _step_importance(problem_dir, len(sentences)),
            "receiver_head_kurtosis": None,
            "receiver_scores": None,
            "head_attention": None,
        },
        "category_table": category_table(sentences, metric_keys) or None,
        "category_table_source": "computed from this trace: mean per primary category, "
        "95 % percentile-bootstrap CI over sentences",
        "transition_matrix": transition_matrix(sentences, categories),
        "notes": {
            "conventions": "Metric definitions: the paper's own numbers (chunks_labeled.json, computed by "
            "analyze_rollouts.py); sentence graph: step_importance.json (step_attribution.py)."
        },
    }
    data = fill_notes(data)
    if agentic:  # the `accuracy` keys hold the rate of the graded outcome (e.g. blackmail rate)
        relabel_outcome(data, f"{graded['outcome']} rate")
    # The published data has no white-box analyses; say so rather than pointing at a STORE command.
    for view in ("suppression", "counterfactual", "receiver_head_kurtosis", "head_attention"):
        if data["matrices"].get(view) is None:
            data["notes"][view] = (
                "not in the published data: run `thoughtlens anchors attention STORE` on your own run of this trace"
            )
    return validate_page_data(data)


def _step_importance(problem_dir: Path, n: int) -> list | None:
    """The published sentence-to-sentence graph (step_importance.json) as an [n, n] matrix, row = source;
    None when the file is absent."""
    path = problem_dir / "step_importance.json"
    if not path.is_file():
        return None
    from thoughtlens.anchors.importance.step_attribution import from_step_importance_json

    try:
        matrix = from_step_importance_json(json.loads(path.read_text(encoding="utf-8")), n)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"cannot read {path}: {e}; re-download the published problem directory") from None
    return matrix.tolist()


def _attach_alternatives(
    sentences: list[dict], resampled: dict, similarity: bool, embed: Embedder | None, max_items: int
) -> None:
    """chunks_resampled.json maps str(sentence index) -> list of replacement sentences (shape checked by
    read_chunks_resampled)."""
    per_sentence = [resampled.get(str(s["index"])) for s in sentences]
    if similarity and embed is None:
        embed = minilm_embedder()
    alts = alternatives_for_trace(
        [s["text"] for s in sentences], per_sentence, embed=embed if similarity else None, max_items=max_items
    )
    for s, a in zip(sentences, alts):
        s["alternatives"] = a
