"""The published agentic (blackmail-scenario) traces of Thought Branches / Thought Anchors.

../shared/data/thought-anchors/agentic/<model>/<yes|no>_base_solution/scenario_N/ holds scenario.json
(instead of a maths problem.json), base_solution.json (prompt, solution, full_cot, reasoning and the
grade `contains_blackmail`), chunks_labeled.json, chunks_resampled.json, step_importance.json and
summary.json. In chunks_labeled.json the `accuracy` keys hold the blackmail rate of the rollouts (the
agentic analysis reuses the maths script's names), so they are shown as "blackmail rate".
"""

from __future__ import annotations

from pathlib import Path

from thoughtlens.errors import DataError
from thoughtlens.trace.published_files import read_json

SCENARIO = "scenario.json"


def is_agentic(problem_dir: Path) -> bool:
    """A scenario directory (scenario.json, no problem.json)."""
    return (problem_dir / SCENARIO).is_file() and not (problem_dir / "problem.json").is_file()


def outcome_name(base: dict) -> str:
    """The graded property of the base solution: "blackmail" for `contains_blackmail` (the first
    `contains_*` key); "outcome" when none is recorded."""
    keys = [k for k in base if k.startswith("contains_")]
    return keys[0][len("contains_") :].replace("_", " ") if keys else "outcome"


def scenario_problem(problem_dir: Path, base: dict) -> tuple[dict, dict]:
    """(problem, trace answer) for the page: the scenario's prompt text as the problem, and the base
    solution's grade as its answer ("blackmail: yes" / "blackmail: no"), with no ground truth."""
    path = problem_dir / SCENARIO
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(
            f"{path} must hold a JSON object (scenario_id, system_prompt, user_prompt, ...): "
            "re-download the published scenario directory"
        )
    parts = [data.get(k) for k in ("system_prompt", "user_prompt", "email_content")]
    text = "\n\n".join(p for p in parts if isinstance(p, str) and p.strip()) or str(base.get("prompt") or "")
    name = outcome_name(base)
    graded = base.get(f"contains_{name.replace(' ', '_')}")
    answer = None if not isinstance(graded, bool) else f"{name}: {'yes' if graded else 'no'}"
    problem = {
        "problem": text,
        "nickname": data.get("nickname") if isinstance(data.get("nickname"), str) else None,
        "gt_answer": None,
    }
    return problem, {"answer": answer, "is_correct": None, "outcome": name}
