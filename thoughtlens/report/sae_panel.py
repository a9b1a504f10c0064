"""The SAE feature panel's page data, from the artifacts `thoughtlens sae store-features` writes
(sae/run_features.py; declared in store/artifacts.py):

```
"sae_features": {
    "sae": {"hook", "architecture", "d_sae", "pool"},
    "sentences": [[{"feature": int, "activation": float}, ...] per sentence],  # strongest first
    "features": {"<id>": {"label": str | None,
                          "up": [{"token", "effect"}] | None, "down": [...] | None,    # logit effects
                          "top_sentences": [{"problem_id", "sentence", "activation", "text", "here": bool}]}},
} | None
```

Only the latents that appear in this problem's sentence lists are kept. Every string here is model text
(tokens, sentences, labels): the page puts it in with textContent only.
"""

from __future__ import annotations

from thoughtlens.errors import ThoughtlensError
from thoughtlens.report.page_data import clean_number

_FIX = "recompute them with `thoughtlens sae store-features SAE_DIR STORE`"


def sae_panel_data(per_problem, table, n: int, problem_id: str) -> tuple[dict | None, str | None]:
    """(panel data or None, a note for the panel or None). per_problem: artifact sae_sentence_features of
    this problem; table: the run's sae_feature_table; n: sentences on the page."""
    if per_problem is None:
        return None, None
    if not isinstance(per_problem, dict) or not isinstance(per_problem.get("sentences"), list):
        raise ThoughtlensError(f"artifact sae_sentence_features must be {{sae, sentences}}; {_FIX}")
    sentences = per_problem["sentences"]
    if len(sentences) != n:
        raise ThoughtlensError(f"artifact sae_sentence_features has {len(sentences)} sentences for {n}; {_FIX}")
    rows = [[{"feature": int(f), "activation": clean_number(a)} for f, a in sent] for sent in sentences]
    meta = per_problem.get("sae") or {}
    wanted = sorted({r["feature"] for sent in rows for r in sent})
    note = None
    features: dict[str, dict] = {}
    if table is None:
        note = f"the run has no feature table (logit effects, top sentences); {_FIX}"
    elif (table.get("sae") or {}).get("fingerprint") != meta.get("fingerprint"):
        note = (
            f"the run's feature table comes from another SAE than this problem's features; "
            f"recompute with `thoughtlens sae store-features SAE_DIR STORE --problem {problem_id}`"
        )
    else:
        stored = table.get("features") or {}
        for f in wanted:
            entry = stored.get(str(f))
            if entry is None:
                continue
            features[str(f)] = {
                "label": None if entry.get("label") is None else str(entry["label"]),
                "up": _tokens(entry.get("up")),
                "down": _tokens(entry.get("down")),
                "top_sentences": [
                    {
                        "problem_id": str(pid),
                        "sentence": int(s),
                        "activation": clean_number(a),
                        "text": str(text),
                        "here": str(pid) == str(problem_id),
                    }
                    for pid, s, a, text in entry.get("top_sentences") or []
                ],
            }
    sae = {k: meta.get(k) for k in ("hook", "architecture", "d_sae", "pool")}
    return {"sae": sae, "sentences": rows, "features": features}, note


def _tokens(pairs) -> list[dict] | None:
    return None if pairs is None else [{"token": str(t), "effect": clean_number(v)} for t, v in pairs]
