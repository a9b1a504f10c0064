"""The report page in headless Chromium (Debian's `chromium`, driven by Playwright): loads with no
console errors and no network, clicks select sentences, the metric switcher resizes nodes, hostile
text stays text, and a full-page screenshot shows what the page drew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from report_browser import EVIL, Loaded

from thoughtlens.report import ReportPage, page_data_from_published, page_data_from_store
from thoughtlens.report.synthetic import synthetic_store
from thoughtlens.store import RunStore

pytestmark = pytest.mark.browser


def _write(tmp_path: Path, data: dict, name: str = "page.html") -> Path:
    return ReportPage(data).save(tmp_path / name)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, browser):
    tmp = tmp_path_factory.mktemp("report")
    store, _, _ = synthetic_store(tmp / "run.sqlite", 40, seed=3)
    data = page_data_from_store(store, similarity=False)
    store.close()
    loaded = Loaded(browser, _write(tmp, data))
    yield data, loaded
    loaded.page.close()


def test_loads_with_no_console_errors_and_no_network(synthetic):
    data, loaded = synthetic
    assert loaded.errors == []
    assert loaded.requests == [loaded.url]
    assert loaded.page.locator("circle.node").count() == len(data["sentences"])
    assert loaded.page.locator("canvas.heatmap").count() == 4  # kurtosis, one head, suppression, counterfactual


def test_clicking_a_node_opens_its_panel(synthetic):
    data, loaded = synthetic
    for i in (7, 0, 39):
        loaded.page.click(f"circle.node[data-index='{i}']")
        assert loaded.page.inner_text("#tl-panel-text") == data["sentences"][i]["text"]
        assert loaded.page.get_attribute(f"circle.node[data-index='{i}']", "class").split().count("selected") == 1
    # The suppression matrix marks the selected sentence's row: the band's top is at 39/40 of the height.
    band = loaded.page.locator("#tl-suppression .hm-band.row").bounding_box()
    canvas = loaded.page.locator("#tl-suppression canvas").bounding_box()
    assert band["y"] - canvas["y"] == pytest.approx(canvas["height"] * 39 / 40, abs=1.5)
    loaded.page.click("#tl-trace .sent[data-index='12']")  # the full trace selects too
    assert loaded.page.inner_text("#tl-panel-text") == data["sentences"][12]["text"]
    loaded.page.click("#tl-strip .cell[data-index='20']")
    assert loaded.page.inner_text("#tl-panel-text") == data["sentences"][20]["text"]


def test_metric_switcher_changes_node_sizes(synthetic):
    data, loaded = synthetic
    loaded.page.select_option("#tl-metric", "accuracy")
    before = loaded.radii()
    loaded.page.select_option("#tl-metric", "resampling_importance_kl")
    after = loaded.radii()
    assert before != after
    values = [abs(s["metrics"]["resampling_importance_kl"]) for s in data["sentences"]]
    biggest = max(range(len(values)), key=values.__getitem__)
    assert max(range(len(after)), key=after.__getitem__) == biggest  # largest |value| -> largest node
    assert after[biggest] == pytest.approx(15.0, abs=0.01)  # R_MAX in report.js


def _parse_css_colour(value: str) -> np.ndarray:
    """ "rgb(r, g, b)" or "rgba(r, g, b, a)" -> [r, g, b, a] with a in [0, 1]."""
    assert value.startswith(("rgb(", "rgba(")), value
    parts = [float(v) for v in value[value.index("(") + 1 : -1].split(",")]
    return np.array(parts + [1.0] * (4 - len(parts)))


def _css_rgb(page, selector: str, prop: str) -> np.ndarray:
    """The colour `prop` ("fill", "backgroundColor") of the element at `selector` as painted: a translucent colour
    composited (source-over) onto the nearest ancestor background that is not transparent (the page's white if none)."""
    colour = _parse_css_colour(page.eval_on_selector(selector, f"e => getComputedStyle(e).{prop}"))
    backdrop = page.eval_on_selector(
        selector,
        """e => {
        for (let p = e.parentElement; p; p = p.parentElement) {
            const c = getComputedStyle(p).backgroundColor;
            if (c !== "rgba(0, 0, 0, 0)" && c !== "transparent") return c;
        }
        return "rgb(255, 255, 255)";
    }""",
    )
    back = _parse_css_colour(backdrop)
    assert back[3] == 1.0, backdrop
    a = colour[3]
    return a * colour[:3] + (1 - a) * back[:3]


def _doc_centre(page, selector: str) -> tuple[int, int]:
    """The centre of the element at `selector` in document pixels (what a full-page screenshot shows)."""
    x, y = page.eval_on_selector(
        selector,
        "e => { const r = e.getBoundingClientRect();"
        " return [r.left + r.width / 2 + scrollX, r.top + r.height / 2 + scrollY]; }",
    )
    return round(x), round(y)


def test_screenshot_is_saved(synthetic, tmp_path):
    """A full-page PNG of the page with a node selected: it decodes, has the document's size at the device scale
    factor, is not blank, and shows the selected node and a heat-strip cell in the colours the page gave them."""
    from PIL import Image

    _, loaded = synthetic
    page = loaded.page
    radii = loaded.radii()
    big = max(range(len(radii)), key=radii.__getitem__)  # a large node: its centre is fill, not stroke
    assert radii[big] >= 6
    node = f"circle.node[data-index='{big}']"
    page.click(node)
    page.mouse.move(0, 0)
    path = tmp_path / "report_synthetic.png"
    page.screenshot(path=str(path), full_page=True)

    with Image.open(path) as im:
        assert im.format == "PNG"
        img = np.asarray(im.convert("RGB")).astype(int)
    width, height, scale = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight, devicePixelRatio]"
    )
    assert img.shape == (round(height * scale), round(width * scale), 3)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # not a blank page

    def pixel(selector):
        x, y = _doc_centre(page, selector)
        return img[round(y * scale), round(x * scale)]

    assert "selected" in page.get_attribute(node, "class").split()  # fill-opacity 1: the pixel is the fill
    np.testing.assert_allclose(pixel(node), _css_rgb(page, node, "fill"), atol=2)
    cell = f"#tl-strip .cell[data-index='{(big + 1) % len(radii)}']"
    np.testing.assert_allclose(pixel(cell), _css_rgb(page, cell, "backgroundColor"), atol=2)
    assert np.abs(_css_rgb(page, node, "fill") - 255).max() > 30  # a coloured node, not the white page


def test_hostile_text_renders_as_text_and_no_dialog_fires(browser, tmp_path):
    store, _, _ = synthetic_store(
        tmp_path / "evil.sqlite", 6, texts={0: EVIL, 3: "a </script> b"}, problem_text=EVIL, answer='"</script>{{x}}'
    )
    data = page_data_from_store(store, similarity=False)
    store.close()
    data["title"] = EVIL
    loaded = Loaded(browser, _write(tmp_path, data))
    page = loaded.page
    page.click("circle.node[data-index='0']")
    assert page.inner_text("#tl-panel-text") == EVIL
    page.click("circle.node[data-index='3']")
    assert page.inner_text("#tl-panel-text") == "a </script> b"
    assert page.inner_text(".problem-text") == EVIL
    assert page.inner_text("#tl-title") == EVIL and page.title() == EVIL
    assert '"</script>{{x}}' in page.inner_text("#tl-final")
    assert page.locator("img").count() == 0  # the <img onerror> in the text never became an element
    assert loaded.dialogs == [] and loaded.errors == []
    page.close()


def test_missing_views_show_notes(browser, tmp_path):
    store = RunStore(tmp_path / "bare.sqlite")
    store.create_run("r", {})
    store.add_problem("r", "p", "What?", None)
    store.add_trace(
        "r",
        "p",
        "",
        "First step here. Second step here.",
        None,
        None,
        [
            {"index": 0, "start": 0, "end": 16, "text": "First step here."},
            {"index": 1, "start": 17, "end": 34, "text": "Second step here."},
        ],
    )
    loaded = Loaded(browser, _write(tmp_path, page_data_from_store(store)))
    store.close()
    assert loaded.errors == []
    text = loaded.page.inner_text("#tl-attention-card")
    assert text.count("not computed: run `thoughtlens anchors attention STORE`") == 3
    loaded.page.click("circle.node[data-index='1']")
    assert "not computed: run `thoughtlens anchors run`" in loaded.page.inner_text("#tl-panel")
    loaded.page.close()


def test_published_pages_load_and_select(browser, published_problems, tmp_path):
    for problem_dir in (published_problems[0], published_problems[-1]):
        data = page_data_from_published(problem_dir, similarity=False)
        loaded = Loaded(browser, _write(tmp_path, data, problem_dir.name + ".html"))
        assert loaded.errors == [] and loaded.requests == [loaded.url]
        loaded.page.click("circle.node[data-index='3']")
        assert loaded.page.inner_text("#tl-panel-text") == data["sentences"][3]["text"]
        assert loaded.page.locator("ul.alternatives li").count() == len(data["sentences"][3]["alternatives"])
        # Selecting a late sentence scrolls the trace box so that its text is visible.
        last = len(data["sentences"]) - 2
        loaded.page.click(f"circle.node[data-index='{last}']")
        box = loaded.page.locator("#tl-trace").bounding_box()
        span = loaded.page.locator(f"#tl-trace .sent[data-index='{last}']").bounding_box()
        assert box["y"] <= span["y"] and span["y"] + span["height"] <= box["y"] + box["height"]
        loaded.page.close()
