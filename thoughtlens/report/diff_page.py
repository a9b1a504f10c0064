"""The model-diffing page: one self-contained HTML file (no script, no network) from `diff_summary`'s document.

    html = render_diff_page(doc)                      # doc: thoughtlens.diff.summary.diff_summary(...)
    save_diff_page(doc, "runs/diff.html")

Shows the per-token KL over text (tokens shaded by KL, planted spans outlined), the largest disagreements, the
activation-difference lens's top tokens per layer, the per-layer swap effect (an inline SVG), the most changed
weights, and, when a crosscoder result's page data is passed (`CrosscoderResult.to_json()`), its model-specific
latents with their top contexts. Rendered by jinja2 with autoescaping: every string from the models or the corpus
is HTML-escaped. Its template is `diff_template.html.j2`, apart from the main report's.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import jinja2

from thoughtlens.errors import ThoughtlensError


def _environment() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("thoughtlens.report").joinpath(name).read_text(encoding="utf-8")
    )
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.ChainableUndefined)


def _kl_docs(doc: dict, max_docs: int) -> tuple[list[list[dict]], float]:
    """Per-token view rows and the colour scale's maximum (the 99th percentile, so one outlier does not wash out
    the rest)."""
    kl = doc.get("kl") or {}
    docs = (kl.get("docs") or [])[:max_docs]
    values = sorted(v for d in docs for v in d["kl"] if v is not None)
    top = values[min(len(values) - 1, int(0.99 * len(values)))] if values else 1.0
    top = top if top > 0 else 1.0
    rows = []
    for d in docs:
        labels = d.get("labels") or [False] * len(d["tokens"])
        base_next = d.get("base_next") or [""] * len(d["tokens"])
        ft_next = d.get("finetuned_next") or [""] * len(d["tokens"])
        rows.append(
            [
                {
                    "text": t,
                    "kl": v or 0.0,
                    "alpha": min(1.0, (v or 0.0) / top) * 0.85,
                    "label": bool(lab),
                    "base_next": b,
                    "ft_next": f,
                }
                for t, v, lab, b, f in zip(d["tokens"], d["kl"], labels, base_next, ft_next)
            ]
        )
    return rows, top


def _swap_svg(rows: list[dict], width: int = 640, height: int = 140) -> dict:
    n = max(len(rows), 1)
    step = (width - 34) / n
    base_y = height - 16
    bars = []
    for i, r in enumerate(rows):
        e = max(0.0, min(1.0, float(r.get("effect") or 0.0)))
        h = e * (base_y - 6)
        bars.append(
            {
                "x": round(32 + i * step, 1),
                "y": round(base_y - h, 1),
                "w": round(max(step - 2, 1), 1),
                "h": round(h, 1),
                "layer": r.get("layer"),
                "effect": float(r.get("effect") or 0.0),
                "label": i % max(1, n // 15) == 0,
            }
        )
    return {"width": width, "height": height, "base_y": base_y, "bars": bars}


def render_diff_page(doc: dict, title: str | None = None, max_docs: int = 12) -> str:
    """The page as one HTML string."""
    kl_docs, kl_max = _kl_docs(doc, max_docs)
    template = _environment().get_template("diff_template.html.j2")
    return template.render(
        doc=doc,
        title=title or f"thoughtlens diff: {doc.get('base')} vs {doc.get('finetuned')}",
        kl_docs=kl_docs,
        kl_max=kl_max,
        swap_svg=_swap_svg(doc.get("swap") or []),
    )


def save_diff_page(doc: dict, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the page atomically; a one-line error if the folder is not writable."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(render_diff_page(doc, title), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ThoughtlensError(
            f"cannot write the page to {path} ({exc.strerror or exc}): pass -o with a writable path"
        ) from None
    return path
