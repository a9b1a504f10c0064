"""Category-level results: the paper's published table reproduced, each aggregation rule on hand-made
data, the transition matrix, position debiasing, the store round trip, the CLI and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from thoughtlens.anchors.importance import by_category as cat
from thoughtlens.errors import ThoughtlensError, TraceError

# The numbers: counterfactual KL mean (SE) per category of the 20 Qwen-14B traces.
PUBLISHED_CF_KL = {
    "plan_generation": (0.6225, 0.2805),
    "fact_retrieval": (0.3665, 0.0914),
    "problem_setup": (0.3616, 0.0916),
    "uncertainty_management": (0.3458, 0.0770),
    "self_checking": (0.2409, 0.0766),
    "result_consolidation": (0.2151, 0.0551),
    "active_computation": (0.1926, 0.0271),
    "final_answer_emission": (0.0789, 0.0768),
}


@pytest.fixture(scope="module")
def published(published_dir) -> pd.DataFrame:
    return cat.load_published(published_dir)


def test_published_counterfactual_kl_table_is_reproduced(published):
    table, counts = cat.category_table(published, ["counterfactual_importance_kl"], n_boot=200)
    assert (counts.n_total, counts.n_after_convergence) == (2885, 2089)
    got = table.set_index("category")
    assert set(got.index) == set(PUBLISHED_CF_KL)
    for name, (mean, se) in PUBLISHED_CF_KL.items():
        assert got.loc[name, "mean"] == pytest.approx(mean, abs=1e-3), name
        assert got.loc[name, "se"] == pytest.approx(se, abs=1e-3), name
        assert got.loc[name, "ci_low"] <= got.loc[name, "mean"] <= got.loc[name, "ci_high"]


def test_full_convergence_scan_is_an_explicit_option(published):
    # Scanning every window start (not the paper's range(n - K - 1)) also cuts late convergence: 2,084 kept
    _, counts = cat.apply_rules(published, cat.AggregationRules(convergence_paper_bound=False))
    assert counts.n_after_convergence == 2084
    _, counts = cat.apply_rules(published, cat.AggregationRules(drop_after_convergence=False))
    assert counts.n_after_convergence == 2885


def test_convergence_index_by_hand():
    rules = cat.AggregationRules()
    assert cat.convergence_index([0.5, 1, 1, 1, 1, 0.5, 0.5, 0.5], rules) == 1
    assert cat.convergence_index([0.5, 0.0, 0.0, 0.005, 0.0, 0.5, 0.5, 0.5], rules) == 1  # low convergence too
    late = [0.5] * 4 + [1.0] * 4  # converges at 4, but the paper's loop only tries starts 0..2
    assert cat.convergence_index(late, rules) == 8
    assert cat.convergence_index(late, cat.AggregationRules(convergence_paper_bound=False)) == 4
    assert cat.convergence_index([1, 1, 1, 0.99, 1, 1, 1, 1, 0.5, 0.5, 0.5], rules) == 4  # 0.99 is not > 0.99


def _table(rows) -> pd.DataFrame:
    """rows: (trace_id, tags, value); accuracy 0.5 everywhere so nothing converges."""
    out = []
    for t in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == t]
        for i, (_, tags, v) in enumerate(mine):
            out.append(
                {
                    "trace_id": t,
                    "sentence_index": i,
                    "n_sentences": len(mine),
                    "text": f"s{i}",
                    "tags": tags,
                    "accuracy": 0.5,
                    "m": v,
                }
            )
    return pd.DataFrame(out)


HAND = _table(
    [
        ("A", ["plan_generation"], 1.0),
        ("A", ["plan_generation", "self_checking"], 3.0),
        ("A", ["active_computation"], -2.0),
        ("A", ["unknown"], 9.0),
        ("B", ["plan_generation"], 5.0),
        ("B", ["active_computation"], 4.0),
        ("B", [], 7.0),
    ]
)


def test_per_trace_mean_then_mean_and_se_across_traces():
    table, counts = cat.category_table(HAND, ["m"], n_boot=200)
    pg = table.set_index("category").loc["plan_generation"]
    # trace means: A (1 + 3) / 2 = 2, B 5 -> 3.5; SE = sd([2, 5]) / sqrt(2) = 1.5
    assert (pg["mean"], pg["n_traces"], pg["n"]) == (3.5, 2, 3)
    assert pg["se"] == pytest.approx(1.5)
    assert (counts.n_untagged, counts.n_unknown, counts.n_used) == (1, 1, 5)


def test_negative_importance_is_clipped_only_when_asked():
    def ac(rules):
        table = cat.category_table(HAND, ["m"], rules, n_boot=200)[0]
        return table.set_index("category").loc["active_computation", "mean"]

    assert ac(cat.AggregationRules()) == pytest.approx((0.0 + 4.0) / 2)
    assert ac(cat.AggregationRules(clip_negative=False)) == pytest.approx((-2.0 + 4.0) / 2)


def test_all_tags_unknown_kept_and_pooled_options():
    rules = cat.AggregationRules(first_tag_only=False, skip_unknown=False, per_trace_mean=False)
    t = cat.category_table(HAND, ["m"], rules, n_boot=200)[0].set_index("category")
    assert t.loc["self_checking", "n"] == 1 and t.loc["unknown", "mean"] == 9.0
    assert t.loc["plan_generation", "mean"] == pytest.approx((1 + 3 + 5) / 3)  # pooled over sentences


def test_category_in_one_trace_has_undefined_se_shown_as_such():
    rules = cat.AggregationRules(first_tag_only=False)
    sc = cat.category_table(HAND, ["m"], rules, n_boot=200)[0].set_index("category").loc["self_checking"]
    assert sc["n_traces"] == 1 and math.isnan(sc["se"])
    record = [
        r
        for r in cat.table_artifact(cat.category_table(HAND, ["m"], rules, n_boot=200)[0])
        if r["category"] == "self_checking"
    ][0]
    assert record["se"] is None  # JSON null, never 0


def test_transition_matrix_by_hand():
    df = _table(
        [
            ("A", [t], 0.0)
            for t in ("problem_setup", "plan_generation", "active_computation", "active_computation", "plan_generation")
        ]
        + [("B", ["active_computation"], 0.0), ("B", ["unknown"], 0.0), ("B", ["active_computation"], 0.0)]
    )
    tr = cat.transition_matrix(df, n_boot=300)
    assert tr.categories == ["problem_setup", "plan_generation", "active_computation"]
    i = {c: k for k, c in enumerate(tr.categories)}
    assert tr.counts.sum() == 4  # B's pairs both touch `unknown`
    assert tr.probs[i["problem_setup"], i["plan_generation"]] == 1.0
    assert tr.probs[i["active_computation"], i["active_computation"]] == 0.5
    assert tr.probs[i["active_computation"], i["plan_generation"]] == 0.5
    np.testing.assert_allclose(tr.probs.sum(axis=1), 1.0)
    assert np.all(tr.ci_low <= tr.probs + 1e-12) and np.all(tr.probs <= tr.ci_high + 1e-12)
    assert tr.to_artifact()["counts"][i["plan_generation"]][i["active_computation"]] == 1


def test_position_residuals_remove_a_position_trend():
    pos = pd.Series(np.linspace(0, 1, 50))
    values = 3.0 * pos + 1.0
    np.testing.assert_allclose(cat.position_residuals(pos, values, degree=1), 0.0, atol=1e-9)
    with pytest.raises(ThoughtlensError, match="lower --debias-degree"):
        cat.position_residuals(pos[:5], values[:5], degree=10)


def test_differences_against_reference(published):
    d = cat.category_differences(published, n_boot=300, n_perm=999).set_index("category")
    pg = d.loc["plan_generation"]
    assert pg["difference"] == pytest.approx(0.6225 - 0.1926, abs=1e-3)
    assert pg["ci_low"] > 0 and pg["p_value"] < 0.01 and pg["p_bh"] >= pg["p_value"]
    assert "active_computation" not in d.index


# ---- bad input -------------------------------------------------------------------------------------


def _write_problem(root, name, chunks):
    d = root / "correct_base_solution" / name
    d.mkdir(parents=True)
    (d / "chunks_labeled.json").write_text(json.dumps(chunks))


def _chunk(i, tags, value, acc=0.5):
    return {
        "chunk": f"sentence {i}.",
        "chunk_idx": i,
        "function_tags": tags,
        "accuracy": acc,
        "counterfactual_importance_kl": value,
        "resampling_importance_kl": value,
        "forced_importance_kl": value,
    }


def test_unknown_tag_in_a_file_names_file_and_tag(tmp_path):
    _write_problem(tmp_path, "problem_1", [_chunk(0, ["planning"], 0.1)])
    with pytest.raises(TraceError, match="'planning'.*problem_1") as info:
        cat.load_published(tmp_path)
    assert "\n" not in str(info.value)


def test_folder_without_files_is_an_error(tmp_path):
    with pytest.raises(ThoughtlensError, match="chunks_labeled.json"):
        cat.load_published(tmp_path)


def test_traces_with_no_labelled_sentences_are_reported(tmp_path):
    _write_problem(tmp_path, "problem_1", [_chunk(i, [], 0.1) for i in range(3)])
    df = cat.load_published(tmp_path)
    with pytest.raises(ThoughtlensError, match="no labelled sentences"):
        cat.analyze(df, n_boot=200)


def test_missing_accuracy_column_names_the_fix():
    with pytest.raises(ThoughtlensError, match="drop_after_convergence=False"):
        cat.apply_rules(HAND.drop(columns="accuracy"))


# ---- CLI and store ---------------------------------------------------------------------------------


@pytest.fixture()
def tiny_published(tmp_path):
    root = tmp_path / "pub"
    _write_problem(
        root,
        "problem_1",
        [
            _chunk(0, ["problem_setup"], 0.2),
            _chunk(1, ["plan_generation"], 0.9),
            _chunk(2, ["active_computation"], 0.1),
            _chunk(3, ["self_checking"], 0.3),
        ],
    )
    _write_problem(
        root,
        "problem_2",
        [
            _chunk(0, ["problem_setup"], 0.4),
            _chunk(1, ["plan_generation"], 0.5),
            _chunk(2, ["active_computation"], 0.3),
        ],
    )
    return root


def test_cli_prints_tables_with_ci_and_n_and_writes_the_store(tiny_published, tmp_path):
    from thoughtlens.cli import app
    from thoughtlens.store.run_store import RunStore

    db = tmp_path / "out.sqlite"
    res = CliRunner().invoke(
        app,
        [
            "anchors",
            "categories",
            "--published",
            str(tiny_published),
            "--store",
            str(db),
            "--n-boot",
            "200",
            "--debias-degree",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    out = res.output
    assert "7 of 7 sentences kept after the convergence filter" in out
    assert "95% CI" in out and "n traces" in out and "P(next | category)" in out
    sc_line = next(
        line for line in out.splitlines() if "self_checking" in line and "counterfactual_importance_kl " in line
    )
    assert "n/a" in sc_line  # one trace: SE undefined, not 0
    table = RunStore(db).get_artifact("published", "category_table")
    ps = next(r for r in table if r["category"] == "problem_setup" and r["metric"] == "counterfactual_importance_kl")
    assert ps["mean"] == pytest.approx(0.3) and ps["n_traces"] == 2 and ps["n"] == 2
    assert RunStore(db).get_artifact("published", "transition_matrix")["categories"][0] == "problem_setup"


def test_cli_needs_exactly_one_source(tmp_path):
    from thoughtlens.cli import app

    res = CliRunner().invoke(app, ["anchors", "categories"])
    assert res.exit_code == 1 and "give exactly one of STORE or --published" in res.output


def _two_problem_store(path, tags):
    """A run 'r' of problems p1, p2 with the same two sentences; tags[pid]: each sentence's tags (None: untagged)."""
    from thoughtlens.store.run_store import RunStore

    db = RunStore(path)
    db.create_run("r", {"k": 1})
    for pid, pid_tags in tags.items():
        db.add_problem("r", pid, "q", "1")
        texts = ["Let me try the quadratic formula.", "3 * 4 = 12"]
        db.add_trace(
            "r",
            pid,
            "prompt",
            " ".join(texts),
            "1",
            True,
            [{"index": i, "start": 0, "end": 1, "text": t, "tags": g} for i, (t, g) in enumerate(zip(texts, pid_tags))],
        )
        for i in range(2):
            db.put_metrics("r", pid, i, {"accuracy": 0.5, "counterfactual_importance_kl": 0.1 * (i + 1)})
    return db


def test_cli_labels_untagged_sentences_with_the_encoder_weights_given(tmp_path):
    """--labeler encoder --labeler-weights FILE: an untrained encoder whose head always says self_checking (bias),
    so every sentence must land in that category, which no other labeller gives these two sentences."""
    import torch

    from thoughtlens.cli import app
    from thoughtlens.trace.label_encoder import EncoderClassifier, save_encoder_classifier

    db = _two_problem_store(tmp_path / "run.sqlite", {"p1": [None, None], "p2": [None, None]})
    clf = EncoderClassifier(["active_computation", "self_checking"])
    with torch.no_grad():
        clf.head.weight.zero_()
        clf.head.bias.copy_(torch.tensor([0.0, 5.0]))
    weights = tmp_path / "enc.safetensors"
    save_encoder_classifier(clf, weights)
    res = CliRunner().invoke(
        app,
        [
            "anchors",
            "categories",
            str(db.path),
            "--labeler",
            "encoder",
            "--labeler-weights",
            str(weights),
            "--n-boot",
            "200",
            "--debias-degree",
            "0",
            "--no-convergence-filter",
        ],
    )
    assert res.exit_code == 0, res.output
    table = db.get_artifact("r", "category_table")
    assert {r["category"] for r in table} == {"self_checking"}
    for args in (["--labeler", "encoder"], ["--labeler", "rules", "--labeler-weights", str(weights)]):
        res = CliRunner().invoke(app, ["anchors", "categories", str(db.path), *args])
        assert res.exit_code == 1 and "--labeler encoder needs --labeler-weights FILE" in res.output
        assert len(res.output.strip().splitlines()) == 1


def test_store_sentences_and_metrics_are_joined_and_untagged_ones_labelled(tmp_path):
    from thoughtlens.trace.labelers import get_labeler

    db = _two_problem_store(
        tmp_path / "run.sqlite", {"p1": [["plan_generation"], ["active_computation"]], "p2": [None, None]}
    )
    df = cat.load_store(db, labeler=get_labeler("rules"))
    assert len(df) == 4 and df["counterfactual_importance_kl"].tolist() == pytest.approx([0.1, 0.2, 0.1, 0.2])
    assert df[df.trace_id == "p2"]["tags"].tolist() == [["plan_generation"], ["active_computation"]]
    results = cat.analyze(df, ["counterfactual_importance_kl"], n_boot=200, debias_degree=None)
    assert set(cat.save_results(db, "r", results)) >= {"category_table", "transition_matrix"}
    with pytest.raises(ThoughtlensError, match="--run"):
        cat.load_store(db, "nope")
