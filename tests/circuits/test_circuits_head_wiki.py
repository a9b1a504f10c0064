"""The head wiki table, its files and mosaic, and the `thoughtlens heads` command."""

from __future__ import annotations

import pandas as pd
from tiny_models import tiny_hf
from typer.testing import CliRunner

from thoughtlens import HookedModel
from thoughtlens.circuits import detect, repeated_random_tokens
from thoughtlens.circuits.head_wiki import head_table, safe_name, write_head_wiki
from thoughtlens.cli import app


def test_table_rows_match_detector_scores_and_files_round_trip(tmp_path):
    models = [HookedModel(tiny_hf("llama"), name="org/tiny-llama"), HookedModel(tiny_hf("gpt2"), name="tiny-gpt2")]
    tables = [head_table(m, repeated_random_tokens(m, seq_len=10, batch=2)) for m in models]
    scores = detect(models[0], repeated_random_tokens(models[0], seq_len=10, batch=2))
    row = tables[0].query("layer == 2 and head == 1").iloc[0]
    # the table holds the detector's own float32 scores, and their ratio to the median computed the same way
    assert row["induction"] == float(scores["induction"][2, 1])
    assert row["induction_x_median"] == row["induction"] / tables[0]["induction"].median()
    paths = write_head_wiki(tables, tmp_path)
    assert {p.name for p in paths} == {
        "org_tiny-llama.csv",
        "org_tiny-llama.parquet",
        "tiny-gpt2.csv",
        "tiny-gpt2.parquet",
        "mosaic.png",
    }
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "tiny-gpt2.parquet"), tables[1])
    assert (tmp_path / "mosaic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_safe_name():
    assert safe_name("HuggingFaceTB/SmolLM2 135M") == "HuggingFaceTB_SmolLM2_135M"
    assert safe_name("../x") == ".._x"


def test_cli_writes_the_wiki_for_a_local_model(tmp_path):
    hf = tiny_hf("llama")
    hf.save_pretrained(tmp_path / "tiny")
    result = CliRunner().invoke(
        app, ["heads", str(tmp_path / "tiny"), "--out", str(tmp_path / "wiki"), "--dtype", "fp32"]
    )
    assert result.exit_code == 0, result.output
    df = pd.read_csv(tmp_path / "wiki" / f"{safe_name(str(tmp_path / 'tiny'))}.csv")
    assert len(df) == 3 * 4 and (tmp_path / "wiki" / "mosaic.png").is_file()


def test_cli_missing_model_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["heads", str(tmp_path / "nope"), "--out", str(tmp_path / "wiki")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and len(result.output.strip().splitlines()) == 1
