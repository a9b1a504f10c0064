"""The report page's data and HTML (no browser): escaping, page data from published directories and
from a run store, category statistics, bad-input errors, the CLI command."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from thoughtlens.cli import app
from thoughtlens.errors import StoreError, ThoughtlensError
from thoughtlens.report import ReportPage, page_data_from_published, page_data_from_store, render_page
from thoughtlens.report.alternatives import alternatives_for_trace
from thoughtlens.report.category_stats import category_table, transition_matrix
from thoughtlens.report.page import embed_json
from thoughtlens.report.page_data import NOTES, validate_page_data
from thoughtlens.report.published import locate_chunks
from thoughtlens.report.synthetic import synthetic_store
from thoughtlens.store import RunStore
from thoughtlens.trace.split import first_sentence

EVIL = [
    "<script>alert(1)</script>",
    "</script><script>alert(2)</script>",
    'say "hi"',
    "{{ 7*7 }}",
    "a & b <!-- c",
    "line\u2028sep\u2029end",
]


def _script_json(page_html: str) -> dict:
    """The embedded page data, read back the way the browser does (text of the JSON script)."""
    m = re.search(r'<script type="application/json" id="tl-data">(.*?)</script>', page_html, re.S)
    assert m is not None
    return json.loads(m.group(1))


@pytest.fixture
def small_store(tmp_path):
    store, run_id, problem_id = synthetic_store(tmp_path / "run.sqlite", 12, seed=1)
    yield store, run_id, problem_id
    store.close()


# ---- escaping -------------------------------------------------------------------------------------


def test_embed_json_escapes_html_specials_and_round_trips():
    data = {"texts": EVIL, "n": 1.5}
    text = embed_json(data)
    for ch in "<>&\u2028\u2029":
        assert ch not in text
    assert json.loads(text) == data


def test_hostile_text_stays_inert_in_the_html(small_store):
    store, run_id, problem_id = small_store
    data = page_data_from_store(store, similarity=False)
    data["title"] = EVIL[0] + EVIL[3]
    for s, evil in zip(data["sentences"], EVIL):
        s["text"] = evil
    data["problem"]["text"] = EVIL[1]
    page = render_page(data)
    # Only our own two script elements: the JSON data and the page script.
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}" in page
    assert _script_json(page)["sentences"][1]["text"] == EVIL[1]


def test_repr_html_is_an_escaped_sandboxed_iframe(small_store):
    store, _, _ = small_store
    page = ReportPage(page_data_from_store(store, similarity=False))
    out = page._repr_html_()
    assert out.startswith('<iframe srcdoc="') and 'sandbox="allow-scripts"' in out
    srcdoc = re.match(r'<iframe srcdoc="(.*?)" sandbox', out, re.S).group(1)
    assert "<" not in srcdoc and html.unescape(srcdoc) == page.html


def test_page_has_no_external_resources(small_store):
    store, _, _ = small_store
    page = render_page(page_data_from_store(store, similarity=False))
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "default-src 'none'" in page  # the CSP forbids any fetch


def test_nan_metrics_become_null():
    data = _minimal_data()
    data["sentences"][0]["metrics"] = {"accuracy": float("nan")}
    with pytest.raises(ValueError):  # raw NaN would be invalid JSON in the browser
        embed_json(data)
    from thoughtlens.report.page_data import clean_number

    assert clean_number(float("nan")) is None and clean_number(float("inf")) is None
    assert clean_number(0.123456) == 0.1235


# ---- published data -------------------------------------------------------------------------------


def test_locate_chunks_matches_across_collapsed_whitespace():
    text = "Intro.\n\nLayer 4:\n\nLayer 4: 1 + 3 = 4\n\nDone."
    spans = locate_chunks(text, ["Intro.", "Layer 4: Layer 4: 1 + 3 = 4", "missing chunk", "Done."])
    assert [text[a:b] for a, b in spans] == ["Intro.", "Layer 4:\n\nLayer 4: 1 + 3 = 4", "", "Done."]


def test_published_page_data_matches_the_files(published_problems):
    problem_dir = next(
        p for p in published_problems if p.name == "problem_2238" and p.parent.name.startswith("correct")
    )
    chunks = json.loads((problem_dir / "chunks_labeled.json").read_text())
    data = page_data_from_published(problem_dir, similarity=False)
    sents = data["sentences"]
    assert len(sents) == len(chunks) == 60
    for s, c in zip(sents, chunks):
        assert s["metrics"]["resampling_importance_accuracy"] == pytest.approx(
            c["resampling_importance_accuracy"], abs=1e-3
        )
        assert s["tags"] == c["function_tags"]
        assert " ".join(data["trace"]["text"][s["start"] : s["end"]].split()) == " ".join(c["chunk"].split())
    # kept = accuracy one sentence later (S_i kept), resampled = accuracy at S_i
    i = 10
    assert sents[i]["answers"]["resampled"]["correct"] == pytest.approx(chunks[i]["accuracy"], abs=1e-3)
    assert sents[i]["answers"]["kept"]["correct"] == pytest.approx(chunks[i + 1]["accuracy"], abs=1e-3)
    assert sents[-1]["answers"] is None
    resampled = json.loads((problem_dir / "chunks_resampled.json").read_text())[str(i)]
    top_text, top_count = max(((t, resampled.count(t)) for t in set(resampled)), key=lambda x: x[1])
    assert sents[i]["alternatives"][0] == {
        "text": top_text.strip(),
        "count": top_count,
        "similarity": None,
        "similar": None,
    }
    assert data["trace"]["is_correct"] is True and data["problem"]["gt_answer"] == "120"
    assert "suppression" in data["notes"] and data["matrices"]["suppression"] is None
    assert data["transition_matrix"] is not None and data["category_table"]


def test_published_similarity_flags_use_the_embedder(published_problems):
    problem_dir = published_problems[0]
    # A fake embedder: texts starting like the original ("Okay") point one way, the rest another.
    embed = lambda texts: np.array([[1.0, 0.0] if t.startswith("Okay") else [0.6, 0.8] for t in texts])  # noqa: E731
    data = page_data_from_published(problem_dir, embed=embed)
    first = data["sentences"][0]
    assert first["text"].startswith("Okay")
    for alt in first["alternatives"]:
        assert alt["similarity"] == (1.0 if alt["text"].startswith("Okay") else 0.6)
        assert alt["similar"] == alt["text"].startswith("Okay")


@pytest.mark.parametrize(
    "remove,message", [("problem.json", "lacks problem.json"), ("chunks_labeled.json", "lacks chunks_labeled.json")]
)
def test_published_missing_file_is_a_clear_error(tmp_path, published_problems, remove, message):
    for name in ("problem.json", "base_solution.json", "chunks_labeled.json"):
        if name != remove:
            (tmp_path / name).write_text((published_problems[0] / name).read_text())
    with pytest.raises(ThoughtlensError, match=message):
        page_data_from_published(tmp_path, similarity=False)


def test_published_bad_inputs(tmp_path):
    with pytest.raises(ThoughtlensError, match="is not a directory"):
        page_data_from_published(tmp_path / "nope")
    for name, text in (("problem.json", "{}"), ("base_solution.json", "{}"), ("chunks_labeled.json", "[]")):
        (tmp_path / name).write_text(text)
    with pytest.raises(ThoughtlensError, match="non-empty list"):
        page_data_from_published(tmp_path, similarity=False)
    (tmp_path / "chunks_labeled.json").write_text("{not json")
    with pytest.raises(ThoughtlensError, match="cannot read"):
        page_data_from_published(tmp_path, similarity=False)


# ---- run store ------------------------------------------------------------------------------------


def test_store_page_data_matches_the_store(small_store):
    store, run_id, problem_id = small_store
    data = page_data_from_store(store, similarity=False)
    trace = store.trace(run_id, problem_id)
    assert len(data["sentences"]) == 12
    for s, stored in zip(data["sentences"], trace["sentences"]):
        assert data["trace"]["text"][s["start"] : s["end"]] == stored["text"]  # offsets moved past the prompt
    metrics = store.metrics(run_id, problem_id).set_index("sentence_index")
    s3 = data["sentences"][3]
    assert s3["metrics"]["accuracy"] == pytest.approx(metrics.loc[3, "accuracy"], abs=1e-3)
    assert s3["ci"]["accuracy"] == pytest.approx(
        [metrics.loc[3, "accuracy_ci_low"], metrics.loc[3, "accuracy_ci_high"]], abs=1e-3
    )
    assert "accuracy_ci_low" not in s3["metrics"]
    # Answer distributions recomputed by hand from the rollouts.
    ro = store.rollouts(run_id, problem_id)
    res3 = ro[(ro.sentence_index == 3)]["answer"].tolist()
    res4 = ro[(ro.sentence_index == 4)]["answer"].tolist()
    assert s3["answers"]["resampled"] == pytest.approx({a: res3.count(a) / len(res3) for a in set(res3)}, abs=1e-3)
    assert s3["answers"]["kept"] == pytest.approx({a: res4.count(a) / len(res4) for a in set(res4)}, abs=1e-3)
    assert s3["answers"]["n_resampled"] == 4
    assert {a["text"] for a in s3["alternatives"]} == {f"Alternative {k} for step 3." for k in range(3)}
    assert data["matrices"]["suppression"][0][1] == pytest.approx(
        store.get_artifact(run_id, "suppression_matrix", problem_id)[0, 1], rel=1e-3
    )
    assert len(data["matrices"]["head_attention"]) == 2
    assert s3["metrics"]["receiver_score"] == pytest.approx(
        store.get_artifact(run_id, "receiver_scores", problem_id)[3], rel=1e-3
    )
    assert "suppression" not in data["notes"] and "category_table" not in data["notes"]


def test_store_without_optional_parts_gets_notes(tmp_path):
    store = RunStore(tmp_path / "bare.sqlite")
    store.create_run("r", {})
    store.add_problem("r", "p", "What?", None)
    store.add_trace(
        "r",
        "p",
        "Q: ",
        "First step here. Second step here.",
        None,
        None,
        [
            {"index": 0, "start": 3, "end": 19, "text": "First step here."},
            {"index": 1, "start": 20, "end": 37, "text": "Second step here."},
        ],
    )
    data = page_data_from_store(store)
    for view in (
        "suppression",
        "receiver_head_kurtosis",
        "head_attention",
        "answers",
        "alternatives",
        "category_table",
        "transition_matrix",
    ):
        assert data["notes"][view] == NOTES[view]
    assert data["metrics"] == [] and data["sentences"][1]["answers"] is None
    render_page(data)  # renders without any optional part


def test_store_artifacts_for_category_views_are_used(small_store):
    store, run_id, problem_id = small_store
    table = [{"category": "plan_generation", "metric": "accuracy", "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 9}]
    store.put_artifact(run_id, "category_table", table)  # run-level: across problems
    store.put_artifact(run_id, "transition_matrix", {"categories": ["a", "b"], "matrix": [[0.5, 0.5], [1, 0]]})
    data = page_data_from_store(store, similarity=False)
    assert data["category_table"] == table and data["category_table_source"] == "run artifact category_table"
    assert data["transition_matrix"]["matrix"] == [[0.5, 0.5], [1.0, 0.0]]


def test_store_bad_inputs(tmp_path, small_store):
    store, run_id, problem_id = small_store
    with pytest.raises(StoreError, match="no run store at"):
        page_data_from_store(tmp_path / "missing.sqlite")
    with pytest.raises(StoreError, match="no run 'x'.*--run"):
        page_data_from_store(store, "x")
    with pytest.raises(StoreError, match="no problem 'zz'.*--problem"):
        page_data_from_store(store, run_id, "zz")
    store.add_problem(run_id, "p1", "Another?", "1")
    with pytest.raises(StoreError, match="has 2 problems.*--problem"):
        page_data_from_store(store, run_id)
    with pytest.raises(StoreError, match="no base trace"):
        page_data_from_store(store, run_id, "p1")
    store.put_artifact(run_id, "suppression_matrix", np.zeros((3, 3)), problem_id)
    with pytest.raises(ThoughtlensError, match="shape .*12 sentences"):
        page_data_from_store(store, run_id, problem_id, similarity=False)
    store.put_artifact(run_id, "suppression_matrix", np.zeros((12, 12)), problem_id)
    store.put_artifact(run_id, "sentence_attention_top_heads", [{"layer": 1}], problem_id)
    with pytest.raises(ThoughtlensError, match="list of {layer, head, matrix}"):
        page_data_from_store(store, run_id, problem_id, similarity=False)


# ---- page data validation -------------------------------------------------------------------------


def _minimal_data() -> dict:
    return {
        "schema": "thoughtlens.report/1",
        "title": "t",
        "source": "s",
        "problem": {"id": "p", "text": "", "gt_answer": None},
        "trace": {"text": "A. B.", "answer": None, "is_correct": None},
        "categories": [],
        "metrics": [],
        "sentences": [
            {"index": 0, "start": 0, "end": 2, "text": "A.", "tags": [], "metrics": {}, "ci": {}},
            {"index": 1, "start": 3, "end": 5, "text": "B.", "tags": [], "metrics": {}, "ci": {}},
        ],
        "matrices": {},
        "notes": {},
    }


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.update(schema="v0"), "schema="),
        (lambda d: d.pop("sentences"), "lacks 'sentences'"),
        (lambda d: d.update(sentences=[]), "no sentences"),
        (lambda d: d["sentences"][1].update(index=5), "numbered 0..S-1"),
        (lambda d: d["matrices"].update(suppression=[[0.0]]), r"must be \[2, 2\]"),
        (lambda d: d["matrices"].update(receiver_scores=[1.0]), "1 entries for 2 sentences"),
    ],
)
def test_validate_page_data_rejects_bad_data(change, message):
    data = _minimal_data()
    validate_page_data(data)
    change(data)
    with pytest.raises(ThoughtlensError, match=message):
        validate_page_data(data)


# ---- statistics and helpers -----------------------------------------------------------------------


def _sents(tags, values, key="m"):
    return [{"tags": [t], "metrics": {key: v}} for t, v in zip(tags, values)]


def test_category_table_means_and_cis():
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 1.0, 400)
    sents = _sents(["a"] * 400 + ["b"] * 3 + ["c"], list(values) + [5.0, 5.0, 5.0] + [1.0])
    recs = {r["category"]: r for r in category_table(sents, ["m"])}
    half = 1.96 * values.std(ddof=1) / np.sqrt(400)  # normal-theory CI, independent of the bootstrap
    assert recs["a"]["mean"] == pytest.approx(values.mean())
    assert recs["a"]["ci_low"] == pytest.approx(values.mean() - half, abs=0.25 * half)
    assert recs["a"]["ci_high"] == pytest.approx(values.mean() + half, abs=0.25 * half)
    assert (recs["b"]["mean"], recs["b"]["ci_low"], recs["b"]["ci_high"], recs["b"]["n"]) == (5.0, 5.0, 5.0, 3)
    assert recs["c"]["ci_low"] is None and recs["c"]["n"] == 1


def test_transition_matrix_by_hand():
    sents = _sents(["a", "b", "a", "a", "b", "c"], [0] * 6)
    tm = transition_matrix(sents, ["a", "b", "c"])
    # a->b, b->a, a->a, a->b, b->c : a row 1/3, 2/3, 0; b row 1/2, 0, 1/2; c never followed
    assert tm["counts"] == [[1, 2, 0], [1, 0, 1], [0, 0, 0]]
    assert tm["matrix"] == [[0.3333, 0.6667, 0.0], [0.5, 0.0, 0.5], [None, None, None]]  # c: no data
    assert transition_matrix(_sents(["a"], [0]), ["a"]) is None


def test_alternatives_dedup_count_and_flag():
    embed = lambda texts: np.array([[1.0, 0.0] if "same" in t else [0.0, 1.0] for t in texts])  # noqa: E731
    out = alternatives_for_trace(
        ["the same"], [["same x", " same x", "other", "same y", "same x"]], embed=embed, max_items=2
    )
    assert out == [
        [
            {"text": "same x", "count": 3, "similarity": 1.0, "similar": True},
            {"text": "other", "count": 1, "similarity": 0.0, "similar": False},
        ]
    ]
    assert alternatives_for_trace(["a"], [None], embed=None) == [None]


def test_first_sentence():
    assert first_sentence(" Let me check 3.5 again. Then more.") == "Let me check 3.5 again."
    assert first_sentence("") == ""


# ---- command line ---------------------------------------------------------------------------------


def test_cli_report_published_and_store(tmp_path, published_problems, small_store):
    runner = CliRunner()
    out = tmp_path / "page.html"
    result = runner.invoke(
        app, ["report", "--published", str(published_problems[3]), "-o", str(out), "--no-similarity"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and _script_json(out.read_text())["problem"]["id"].endswith(
        published_problems[3].name
    )
    store, _, _ = small_store
    result = runner.invoke(app, ["report", str(store.path), "-o", str(tmp_path / "s.html"), "--no-similarity"])
    assert result.exit_code == 0, result.output
    assert len(_script_json((tmp_path / "s.html").read_text())["sentences"]) == 12


def test_cli_report_bad_arguments(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["report"])
    assert result.exit_code == 1 and "give exactly one of STORE or --published" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "none.sqlite"), "-o", str(tmp_path / "x.html")])
    assert result.exit_code == 1 and "no run store at" in result.output
    assert not (tmp_path / "x.html").exists()
