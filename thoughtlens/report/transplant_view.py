"""The transplant curve on the page (Thought Branches' faithfulness experiment, anchors/branches/transplant.py).

A transplant run stores, per problem, the hinted chain of thought (`hinted_cot`) and the curve
(`transplant_curve`: [{k, rate, ci_low, ci_high, n, ...}], k = sentences of the hinted CoT placed after
the unhinted prompt). Its problems have no base trace, so the page shows the hinted CoT as the trace,
cut into sentences exactly as the transplant cut it: point k of the curve then follows sentence k - 1.

```
"transplant_curve": {"points": [{"k", "rate" | None, "ci_low" | None, "ci_high" | None, "n", "copied"}],
                     "cot_on_page": bool} | None     # cot_on_page: the page's sentences are the hinted CoT
```
"""

from __future__ import annotations

from thoughtlens.errors import ThoughtlensError
from thoughtlens.report.page_data import clean_number
from thoughtlens.trace.split import split_sentences


def transplant_curve_data(value, *, cot_on_page: bool) -> dict | None:
    """Page data of a stored transplant_curve (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, dict) and {"k", "rate"} <= p.keys() for p in value):
        raise ThoughtlensError(
            "artifact transplant_curve must be a list of {k, rate, ci_low, ci_high, n}; "
            "recompute it with `thoughtlens branches transplant`"
        )
    points = [
        {
            "k": int(p["k"]),
            "rate": clean_number(p["rate"]),
            "ci_low": clean_number(p.get("ci_low")),
            "ci_high": clean_number(p.get("ci_high")),
            "n": p.get("n"),
            "copied": bool(p.get("copied")),
        }
        for p in sorted(value, key=lambda p: int(p["k"]))
    ]
    return {"points": points, "cot_on_page": cot_on_page}


def hinted_cot_trace(cot: str) -> dict:
    """A store-like trace (prompt "", completion = the hinted CoT) whose sentences are the transplant's
    cut points: anchors/branches/transplant.py `_curve` keeps the non-blank spans of split_sentences(cot)."""
    from thoughtlens.anchors.branches.transplant import read_letter

    spans = [(a, b) for a, b in split_sentences(cot) if cot[a:b].strip()]
    return {
        "prompt": "",
        "completion": cot,
        "answer": read_letter(cot),  # the letter the hinted CoT states ("The correct answer is (D)."), if any
        "is_correct": None,
        "sentences": [
            {"index": i, "start": a, "end": b, "text": cot[a:b], "tags": None} for i, (a, b) in enumerate(spans)
        ],
    }
