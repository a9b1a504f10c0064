"""The whole diff of a pair as one JSON-safe document: what `thoughtlens diff page` renders and docs/diffing.md shows.

    doc = diff_summary(pair, kl_docs=planted_eval_corpus(), lens_texts=read_corpus("neutral"))

Sections: "kl" (per-token KL over the KL texts, top disagreements, AUROCs per token and per sentence when the
texts carry labelled spans),
"weights" (per-layer relative change, the most changed modules), "lens" (the activation-difference lens's top
tokens per layer), "swap" (per-layer swap effect), and "crosscoder" (a crosscoder result's page data, passed in).
"""

from __future__ import annotations

from collections.abc import Sequence

from thoughtlens.diff.corpus import LabelledText
from thoughtlens.diff.difference_lens import activation_difference, lens_top_tokens
from thoughtlens.diff.kl import labelled_kl
from thoughtlens.diff.pair import ModelPair
from thoughtlens.diff.swap import swap_effect_per_layer
from thoughtlens.diff.weight_diff import per_layer, weight_diff
from thoughtlens.jsonsafe import json_safe
from thoughtlens.progress import OnProgress


def diff_summary(
    pair: ModelPair,
    *,
    kl_docs: Sequence[str | LabelledText],
    lens_texts: Sequence[str],
    swap_texts: Sequence[str] | None = None,
    max_len: int = 128,
    lens_k: int = 20,
    n_positions: int = 16,
    top_k: int = 20,
    crosscoder: dict | None = None,
    sections: Sequence[str] = ("kl", "weights", "lens", "swap"),
    on_progress: OnProgress | None = None,
) -> dict:
    """Run the chosen tools on a pair and collect their results (lists, numbers and strings only)."""
    doc: dict = {"base": pair.base.name, "finetuned": pair.finetuned.name, "n_layers": pair.n_layers}
    if "kl" in sections:
        lk = labelled_kl(pair, kl_docs, max_len=max_len, on_progress=on_progress)
        doc["kl"] = {
            "docs": [
                {
                    "tokens": d.tokens,
                    "kl": d.kl,
                    "labels": labs,
                    "base_next": d.base_top,
                    "finetuned_next": d.finetuned_top,
                }
                for d, labs in zip(lk.result.docs, lk.labels)
            ],
            "top": lk.result.top(top_k),
            "auroc": lk.auroc,
            "auroc_sentence": lk.auroc_sentence,
            "mean": float(lk.result.all_kl().mean()),
        }
    if "weights" in sections:
        rows_w = weight_diff(pair, ranks=True, on_progress=on_progress)
        doc["weights"] = {
            "per_layer": [{"layer": L, "relative": v} for L, v in per_layer(rows_w).items()],
            "top": sorted(rows_w, key=lambda r: -r["relative"])[:top_k],
        }
    if "lens" in sections:
        diff = activation_difference(pair, lens_texts, n_positions=n_positions, on_progress=on_progress)
        doc["lens"] = {
            "n_texts": diff.n_texts,
            "n_positions": n_positions,
            "layers": [
                {
                    "layer": L,
                    "norm": float(diff.pooled(L).norm()),
                    "base_norm": float(diff.base_norm[L]),
                    "top": lens_top_tokens(pair.finetuned, diff.pooled(L), lens_k) if diff.pooled(L).norm() > 0 else [],
                }
                for L in range(pair.n_layers)
            ],
        }
    if "swap" in sections:
        texts = list(
            swap_texts if swap_texts is not None else [d.text if isinstance(d, LabelledText) else d for d in kl_docs]
        )
        doc["swap"] = swap_effect_per_layer(pair, texts, max_len=max_len, on_progress=on_progress)
    if crosscoder is not None:
        doc["crosscoder"] = crosscoder
    return json_safe(doc)
