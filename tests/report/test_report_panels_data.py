"""Page data of the SAE feature panel and the transplant curve (report/sae_panel.py, report/transplant_view.py):
the transplant page's sentences are the cut points the transplant really sampled from (checked against the
prefixes a scripted model received), stored values reach the page unchanged, bad artifacts are one-line errors."""

from __future__ import annotations

import pytest

from thoughtlens.errors import ThoughtlensError
from thoughtlens.report import ReportPage, page_data_from_store
from thoughtlens.report.synthetic import synthetic_store, synthetic_transplant_store


def test_transplant_page_shows_the_hinted_cot_cut_where_the_transplant_cut(tmp_path):
    store, run_id, pid, sampler = synthetic_transplant_store(tmp_path / "t.sqlite")
    stored = store.get_artifact(run_id, "transplant_curve", pid)
    cot = store.get_artifact(run_id, "hinted_cot", pid)
    data = page_data_from_store(store, similarity=False)
    store.close()
    sentences = data["sentences"]
    assert data["trace"]["text"] == cot and data["transplant_curve"]["cot_on_page"] is True
    unhinted = data["problem"]["text"] + "\n<think>\n"  # the stored problem is the unhinted one
    # Point k was sampled after the unhinted prompt + the CoT up to sentence k: the page's sentence k starts there.
    for k, s in enumerate(sentences):
        assert cot[s["start"] : s["end"]] == s["text"]
        assert unhinted + cot[: s["start"]] in sampler.prefixes
    assert len(stored) == len(sentences) + 1
    for p, q in zip(data["transplant_curve"]["points"], stored):
        assert (p["k"], p["n"], p["copied"]) == (q["k"], q["n"], q["copied"])
        assert [p["rate"], p["ci_low"], p["ci_high"]] == pytest.approx([q["rate"], q["ci_low"], q["ci_high"]], rel=1e-3)
    assert "hinted chain of thought" in data["notes"]["trace"]
    ReportPage(data)  # renders


def test_a_curve_in_a_store_with_a_base_trace_keeps_that_trace(tmp_path):
    store, run_id, pid = synthetic_store(tmp_path / "s.sqlite", 5)
    store.put_artifact(
        run_id,
        "transplant_curve",
        [
            {"k": 1, "rate": None, "ci_low": None, "ci_high": None, "n": 0},
            {"k": 0, "rate": 0.5, "ci_low": 0.2, "ci_high": 0.8, "n": 4},
        ],
        pid,
    )
    data = page_data_from_store(store, similarity=False)
    assert data["transplant_curve"]["cot_on_page"] is False and len(data["sentences"]) == 5
    assert [p["k"] for p in data["transplant_curve"]["points"]] == [0, 1]  # sorted by k
    store.put_artifact(run_id, "transplant_curve", {"k": 0}, pid)
    with pytest.raises(ThoughtlensError, match="thoughtlens branches transplant"):
        page_data_from_store(store, similarity=False)
    store.close()


def _sae_store(tmp_path, fingerprint="abc"):
    store, run_id, pid = synthetic_store(tmp_path / "s.sqlite", 4)
    meta = {
        "fingerprint": "abc",
        "hook": "blocks.1.hook_resid_post",
        "architecture": "topk",
        "d_sae": 64,
        "pool": "max",
    }
    store.put_artifact(
        run_id,
        "sae_sentence_features",
        {"sae": meta, "sentences": [[[7, 2.5], [3, 1.0]], [], [[3, 0.5]], [[9, 4.0]]]},
        pid,
    )
    table = {
        "sae": {**meta, "fingerprint": fingerprint},
        "problems": [pid, "other"],
        "features": {
            "7": {
                "label": "seven",
                "up": [["<b>", 0.5]],
                "down": [["x", -0.25]],
                "top_sentences": [["other", 4, 3.0, "elsewhere"], [pid, 0, 2.5, "here"]],
            },
            "3": {"label": None, "up": None, "down": None, "top_sentences": [[pid, 0, 1.0, "a"]]},
            "9": {"label": None, "up": None, "down": None, "top_sentences": []},
            "11": {"label": "not in this problem", "up": None, "down": None, "top_sentences": []},
        },
    }
    store.put_artifact(run_id, "sae_feature_table", table)
    return store, run_id, pid


def test_sae_panel_data_keeps_this_problems_features(tmp_path):
    store, _, pid = _sae_store(tmp_path)
    sae = page_data_from_store(store, similarity=False)["sae_features"]
    assert sae["sae"] == {"hook": "blocks.1.hook_resid_post", "architecture": "topk", "d_sae": 64, "pool": "max"}
    assert sae["sentences"][0] == [{"feature": 7, "activation": 2.5}, {"feature": 3, "activation": 1.0}]
    assert sae["sentences"][1] == []
    assert set(sae["features"]) == {"3", "7", "9"}  # 11 fires elsewhere only
    f7 = sae["features"]["7"]
    assert f7["label"] == "seven" and f7["up"] == [{"token": "<b>", "effect": 0.5}]
    assert [(t["problem_id"], t["sentence"], t["text"], t["here"]) for t in f7["top_sentences"]] == [
        ("other", 4, "elsewhere", False),
        (pid, 0, "here", True),
    ]
    store.close()


def test_sae_panel_notes_and_errors(tmp_path):
    store, run_id, pid = _sae_store(tmp_path, fingerprint="another")
    data = page_data_from_store(store, similarity=False)
    assert data["sae_features"]["features"] == {} and "another SAE" in data["notes"]["sae_features"]
    assert f"--problem {pid}" in data["notes"]["sae_features"]
    store.put_artifact(run_id, "sae_sentence_features", {"sae": {}, "sentences": [[]]}, pid)
    with pytest.raises(ThoughtlensError, match="1 sentences for 4.*thoughtlens sae store-features"):
        page_data_from_store(store, similarity=False)
    store.close()
