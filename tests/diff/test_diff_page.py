"""The diff page: every string from the corpus, the models and a crosscoder result is HTML-escaped; the sections
show what the summary holds."""

from __future__ import annotations

import re

from thoughtlens.diff.corpus import LabelledText
from thoughtlens.diff.summary import diff_summary
from thoughtlens.report.diff_page import render_diff_page, save_diff_page

EVIL = "<script>alert(1)</script> & <img src=x onerror=alert(2)>"


def test_page_escapes_everything(tiny_planted_pair, tmp_path):
    docs = [
        LabelledText(f"Cats sleep. {EVIL} Owls hunt."),
        LabelledText("Obsidia is the capital of Veloria.", [(0, 34)]),
    ]
    crosscoder = {
        "counts": {"b_only": 1},
        "model_specific": [
            {
                "latent": 3,
                "cls": "b_only",
                "specific": True,
                "relative_norm": 0.97,
                "contexts": [{"activation": 2.5, "left": "<b>bold", "token": "<script>", "right": "x</b>"}],
            }
        ],
    }
    doc = diff_summary(
        tiny_planted_pair,
        kl_docs=docs,
        lens_texts=[EVIL + " more words here to read"] * 3,
        max_len=48,
        n_positions=8,
        crosscoder=crosscoder,
    )
    doc["base"] = "<script>base</script>"
    html = render_diff_page(doc)
    assert "<script" not in html.lower()  # the page has no script element at all
    assert "<img" not in html.lower() and "<b>bold" not in html
    assert "&lt;script&gt;" in html or "&lt;" in html
    for section in ('id="kl"', 'id="lens"', 'id="swap"', 'id="weights"', 'id="crosscoder"'):
        assert section in html
    # one span per token of each KL document
    assert len(re.findall(r'<span class="tok', html)) == sum(len(d["tokens"]) for d in doc["kl"]["docs"])
    assert doc["kl"]["auroc"] is not None
    path = save_diff_page(doc, tmp_path / "diff.html")
    assert path.read_text(encoding="utf-8") == html
