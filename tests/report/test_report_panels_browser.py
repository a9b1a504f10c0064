"""The SAE feature panel and the transplant curve in headless Chromium (as tests/report/test_report_browser.py):
features computed by the real pipeline on a tiny model, a transplant run by the real run_transplant with a
scripted model; clicks select; every string from model text stays text; a store without them shows no card."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from report_browser import ARTIFACTS, EVIL, Loaded

from thoughtlens.report import ReportPage, page_data_from_store
from thoughtlens.report.synthetic import synthetic_store, synthetic_transplant_store
from thoughtlens.sae import build_sae
from thoughtlens.sae.run_features import store_run_features

pytestmark = pytest.mark.browser


HOSTILE_COT = (
    "The professor hints at D. I add 17 and 25 to get 42, which is B. The professor seems sure about D "
    "<img src=x onerror=alert(3)>. Maybe the professor knows more <script>alert(4)</script> than me. "
    "So the professor must be right."
)


def _open(browser, tmp_path: Path, data: dict, name: str) -> Loaded:
    return Loaded(browser, ReportPage(data).save(tmp_path / name))


@pytest.fixture(scope="module")
def sae_page(tmp_path_factory, browser, tiny_lm):
    """A 12-sentence synthetic run (sentence 2 hostile) with SAE features of a tiny model; the first feature of
    sentence 2 gets a hostile label and a hostile top token (a tokenizer's vocabulary is model text too)."""
    tmp = tmp_path_factory.mktemp("sae_page")
    store, run_id, pid = synthetic_store(tmp / "run.sqlite", 12, seed=1, texts={2: EVIL})
    torch.manual_seed(0)
    sae = build_sae(architecture="standard", d_in=tiny_lm.cfg.d_model, d_sae=48, hook_name="blocks.1.hook_resid_post")
    store_run_features(tiny_lm, sae.eval(), store, top_per_sentence=4, top_sentences=12, n_tokens=4)
    feature = store.get_artifact(run_id, "sae_sentence_features", pid)["sentences"][2][0][0]
    table = store.get_artifact(run_id, "sae_feature_table")
    table["features"][str(feature)]["label"] = EVIL
    table["features"][str(feature)]["up"][0][0] = EVIL
    store.put_artifact(run_id, "sae_feature_table", table)
    data = page_data_from_store(store, similarity=False)
    store.close()
    loaded = _open(browser, tmp, data, "sae.html")
    yield data, loaded, feature
    loaded.page.close()


def test_sentence_panel_lists_its_top_features(sae_page):
    data, loaded, _ = sae_page
    page = loaded.page
    assert loaded.errors == [] and loaded.requests == [loaded.url]
    sae = data["sae_features"]
    for i in (0, 2, 11):
        page.click(f"circle.node[data-index='{i}']")
        buttons = page.locator("#tl-sae-sentence button.feat")
        assert buttons.all_inner_texts() == [f"F{r['feature']}" for r in sae["sentences"][i]]
        values = page.locator("#tl-sae-sentence .bar-value").all_inner_texts()
        assert [float(v) for v in values] == pytest.approx([r["activation"] for r in sae["sentences"][i]], abs=1e-3)


def test_clicking_a_feature_shows_where_else_it_fires(sae_page):
    data, loaded, feature = sae_page
    page = loaded.page
    page.click("circle.node[data-index='2']")
    page.click(f"#tl-sae-sentence button.feat[data-feature='{feature}']")
    assert page.inner_text("#tl-sae-title") == f"Feature {feature}"
    info = data["sae_features"]["features"][str(feature)]
    rows = page.locator("#tl-sae-top tr")
    assert rows.count() == 1 + len(info["top_sentences"])
    assert page.locator("#tl-sae-top td.sae-text").all_inner_texts() == [t["text"] for t in info["top_sentences"]]
    # Where it fires in this trace: the sentences whose top lists hold it are underlined in the trace.
    fires = [
        i for i, rows_ in enumerate(data["sae_features"]["sentences"]) if any(r["feature"] == feature for r in rows_)
    ]
    assert [
        int(x) for x in page.eval_on_selector_all("#tl-trace .sent.fires", "es => es.map(e => e.dataset.index)")
    ] == fires
    # A top sentence of this problem is a link that selects it.
    last = info["top_sentences"][-1]["sentence"]
    page.locator("#tl-sae-top button.link").last.click()
    assert page.inner_text("#tl-panel-text") == data["sentences"][last]["text"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.mouse.move(0, 0)
    page.screenshot(path=str(ARTIFACTS / "report_sae_panel.png"), full_page=True)


def test_feature_text_is_escaped(sae_page):
    _, loaded, feature = sae_page
    page = loaded.page
    page.click("circle.node[data-index='2']")
    assert page.inner_text("#tl-panel-text") == EVIL
    page.click(f"#tl-sae-common button.feat[data-feature='{feature}']")
    assert page.inner_text("#tl-sae-label") == EVIL
    assert page.locator("#tl-sae-feature code.tok").first.inner_text() == EVIL
    assert EVIL in page.locator("#tl-sae-top td.sae-text").all_inner_texts()
    assert page.locator("img").count() == 0 and page.locator("body script").count() == 2  # data + the page's own
    assert loaded.dialogs == [] and loaded.errors == []


def _band_vertices(d: str) -> list[tuple[float, float]]:
    assert d.startswith("M") and d.endswith("Z")
    return [tuple(map(float, p.split(","))) for p in d[1:-1].split("L")]


def test_transplant_curve_has_its_points_and_ci_band(browser, tmp_path):
    store, run_id, pid, _ = synthetic_transplant_store(tmp_path / "t.sqlite", cot=HOSTILE_COT)
    stored = store.get_artifact(run_id, "transplant_curve", pid)
    data = page_data_from_store(store, similarity=False)
    store.close()
    curve = data["transplant_curve"]["points"]  # what the page draws: the stored curve at 4 significant digits
    for key in ("k", "rate", "ci_low", "ci_high", "n", "copied"):
        assert [p[key] for p in curve] == pytest.approx([p[key] for p in stored], rel=1e-3)
    loaded = _open(browser, tmp_path, data, "transplant.html")
    page = loaded.page
    assert loaded.errors == [] and loaded.requests == [loaded.url] and loaded.dialogs == []
    assert page.locator("img").count() == 0  # the hostile CoT is the trace: text only
    points = page.locator("#tl-transplant circle.tp-point")
    assert points.count() == len(curve) == len(data["sentences"]) + 1
    assert page.locator("#tl-transplant circle.tp-point.copied").count() == sum(p["copied"] for p in curve)
    cx = [float(points.nth(j).get_attribute("cx")) for j in range(len(curve))]
    cy = [float(points.nth(j).get_attribute("cy")) for j in range(len(curve))]
    # The y axis is linear in the rate: recover it from two points with different rates, then the band's
    # upper edge must sit at every point's ci_high and its lower edge (drawn back) at its ci_low.
    a, b = next((i, j) for i in range(len(curve)) for j in range(len(curve)) if curve[i]["rate"] < curve[j]["rate"])
    scale = (cy[b] - cy[a]) / (curve[b]["rate"] - curve[a]["rate"])
    to_y = lambda v: cy[a] + (v - curve[a]["rate"]) * scale  # noqa: E731
    assert [to_y(p["rate"]) for p in curve] == pytest.approx(cy, abs=0.02)
    bands = page.locator("#tl-transplant path.tp-band")
    assert bands.count() == 1
    vertices = _band_vertices(bands.get_attribute("d"))
    assert len(vertices) == 2 * len(curve)
    upper, lower = vertices[: len(curve)], vertices[len(curve) :][::-1]
    for p, x, (ux, uy), (lx, ly) in zip(curve, cx, upper, lower):
        assert ux == pytest.approx(x, abs=0.02) and lx == pytest.approx(x, abs=0.02)
        assert uy == pytest.approx(to_y(p["ci_high"]), abs=0.05) and ly == pytest.approx(to_y(p["ci_low"]), abs=0.05)
    assert page.locator("#tl-transplant path.tp-line").count() == 1
    # The trace is the hinted CoT: point k selects sentence k - 1, the last one it keeps.
    page.click("#tl-transplant circle.tp-point[data-k='3']")
    assert page.inner_text("#tl-panel-text") == data["sentences"][2]["text"]
    assert "<img src=x onerror=alert(3)>" in page.inner_text("#tl-panel-text")
    page.mouse.move(0, 0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report_transplant.png"), full_page=True)
    page.close()


def test_a_store_without_them_has_no_empty_panel(browser, tmp_path):
    store, _, _ = synthetic_store(tmp_path / "plain.sqlite", 8, seed=2)
    data = page_data_from_store(store, similarity=False)
    store.close()
    assert data["sae_features"] is None and data["transplant_curve"] is None
    loaded = _open(browser, tmp_path, data, "plain.html")
    page = loaded.page
    assert loaded.errors == []
    assert page.locator("#tl-transplant-card, #tl-sae-card, svg.transplant").count() == 0
    page.click("circle.node[data-index='1']")
    assert "SAE" not in page.inner_text("#tl-panel")
    page.close()
