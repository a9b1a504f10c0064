"""Name the page's rate after the outcome a run measured ("blackmail rate"), not "accuracy".

The metric keys stay those of the paper's files (`accuracy`, `resampling_importance_accuracy`, ...: the
published agentic chunks_labeled.json and thoughtlens runs with another outcome store the outcome's rate
under them, as Thought Branches' own analysis does); only what the page shows changes.
"""

from __future__ import annotations


def relabel_outcome(data: dict, label: str) -> dict:
    """Page data with metric labels, descriptions and answer distributions named after `label` (a rate,
    e.g. "blackmail rate"); unchanged for "accuracy". Returns `data` (changed in place)."""
    if not label or label == "accuracy":
        return data
    name = label[: -len(" rate")] if label.endswith(" rate") else label
    title = label[0].upper() + label[1:]
    for m in data.get("metrics") or []:
        if m.get("key") == "accuracy":
            m["label"] = f"{title} of rollouts"
            m["description"] = f"Fraction of rollouts resampled from this sentence with the outcome: {name}."
        else:
            m["label"] = m["label"].replace("(accuracy)", f"({label})")
            m["description"] = m["description"].replace("accuracy", label)
    yes, no = name, f"not {name}"
    for s in data.get("sentences") or []:
        answers = s.get("answers")
        if not answers:
            continue
        for side in ("kept", "resampled"):
            dist = answers.get(side)
            if isinstance(dist, dict) and set(dist) <= {"correct", "incorrect"}:
                answers[side] = {(yes if k == "correct" else no): v for k, v in dist.items()}
        if isinstance(answers.get("note"), str):
            answers["note"] = answers["note"].replace("accuracy", label)
    data["outcome"] = {"label": label}
    notes = data.setdefault("notes", {})
    extra = f"Outcome measured: {label} (stored under the 'accuracy' keys)."
    notes["conventions"] = f"{notes['conventions']} {extra}" if notes.get("conventions") else extra
    return data
