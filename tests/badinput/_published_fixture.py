"""A small, valid published Thought Anchors problem directory built from scratch (no shared data needed)."""

from __future__ import annotations

import json
from pathlib import Path

SOLUTION = "First we add 2 and 3 to get 5.\nThen we check it again. So the answer is \\boxed{5}."
CHUNKS = ["First we add 2 and 3 to get 5.", "Then we check it again.", "So the answer is \\boxed{5}."]
TAGS = [["active_computation"], ["self_checking"], ["final_answer_emission"]]


def valid_files() -> dict[str, object]:
    chunks = [
        {
            "chunk": text,
            "chunk_idx": i,
            "function_tags": TAGS[i],
            "depends_on": [str(i - 1)] if i else [],
            "accuracy": 0.5 + 0.2 * i,
            "resampling_importance_accuracy": 0.1,
            "resampling_importance_kl": 0.2,
            "counterfactual_importance_accuracy": 0.05,
            "counterfactual_importance_kl": 0.3,
            "forced_importance_accuracy": 0.0,
            "forced_importance_kl": 0.4,
            "different_trajectories_fraction": 0.5,
            "overdeterminedness": 0.5,
            "summary": "a step",
        }
        for i, text in enumerate(CHUNKS)
    ]
    return {
        "problem.json": {"problem": "What is 2 + 3?", "gt_answer": "5", "nickname": "add"},
        "base_solution.json": {
            "prompt": "Solve: What is 2 + 3?",
            "solution": SOLUTION,
            "full_cot": SOLUTION,
            "answer": "5",
            "is_correct": True,
        },
        "chunks_labeled.json": chunks,
        "chunks_resampled.json": {str(i): [f"Alternative {i}."] for i in range(len(CHUNKS))},
    }


def write_problem_dir(root: Path, files: dict[str, object] | None = None, raw: dict[str, bytes] | None = None) -> Path:
    """root/correct_base_solution/problem_1 with `files` (JSON-encoded) and `raw` (bytes as-is); a value of
    None leaves that file out."""
    d = Path(root) / "correct_base_solution" / "problem_1"
    d.mkdir(parents=True, exist_ok=True)
    for name, value in (files if files is not None else valid_files()).items():
        if value is not None:
            (d / name).write_text(json.dumps(value), encoding="utf-8")
    for name, data in (raw or {}).items():
        (d / name).write_bytes(data)
    return d
