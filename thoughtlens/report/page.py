"""Render page data (see page_data.py) into one self-contained HTML file: inline CSS and JS, the data
in a <script type="application/json">, no network. `ReportPage` also displays in Jupyter."""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup

from thoughtlens.errors import ThoughtlensError
from thoughtlens.report.page_data import validate_page_data

# A JSON string may hold "</script>", "<!--" or U+2028/2029; escaping these keeps it inert inside a
# <script> element and valid as JavaScript. JSON.parse turns \u003c etc. back into the same text.
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def embed_json(data: dict) -> str:
    """JSON for a <script type="application/json"> element: no raw <, >, &, U+2028, U+2029."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return "".join(_JSON_ESCAPES.get(ch, ch) for ch in text)


def _asset(name: str) -> str:
    return resources.files("thoughtlens.report").joinpath(name).read_text(encoding="utf-8")


def _environment() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(lambda name: _asset(name))
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)


def render_page(data: dict) -> str:
    """The page as one HTML string. data: page data (validated here)."""
    validate_page_data(data)
    script, style = _asset("report.js"), _asset("report.css")
    # Our own assets go in unescaped; they must never close their element early.
    assert "</script" not in script.lower() and "</style" not in style.lower()
    template = _environment().get_template("template.html.j2")
    return template.render(
        title=data.get("title") or "thoughtlens report",
        data_json=Markup(embed_json(data)),
        script=Markup(script),
        style=Markup(style),
    )


class ReportPage:
    """A rendered report: `.html`, `.save(path)`, and inline display in Jupyter (`_repr_html_`)."""

    def __init__(self, data: dict):
        self.data = data
        self.html = render_page(data)

    def save(self, path: str | Path) -> Path:
        """Write the page atomically (a temporary file, then a rename): never half a page on disk."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(self.html, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ThoughtlensError(
                f"cannot write the page to {path} ({exc.strerror or exc}): "
                "pass -o with a path in a writable folder that has space"
            ) from None
        return path

    def _repr_html_(self) -> str:
        # The same page inside an iframe: srcdoc keeps it self-contained, and sandbox without
        # allow-same-origin keeps its scripts away from the notebook.
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" sandbox="allow-scripts" '
            'style="width:100%;height:900px;border:1px solid #ddd"></iframe>'
        )
