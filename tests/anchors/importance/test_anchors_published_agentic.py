"""The two published blackmail-scenario traces open like the maths ones: the page names the
rate "blackmail rate", and every per-sentence value it shows is the file's (at the page's 4 significant
digits), with the files left unchanged."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def agentic_dirs(shared_data: Path) -> list[Path]:
    """The two published scenario directories under the shared data (THOUGHTLENS_SHARED_DATA), sorted."""
    agentic = shared_data / "thought-anchors" / "agentic"
    dirs = sorted(agentic.glob("*/*_base_solution/scenario_*"))
    if len(dirs) != 2:
        pytest.skip(f"the two published agentic traces are not under {agentic} (found {len(dirs)})")
    return dirs


KEYS = (
    "accuracy",
    "resampling_importance_accuracy",
    "resampling_importance_kl",
    "counterfactual_importance_accuracy",
    "counterfactual_importance_kl",
    "different_trajectories_fraction",
    "overdeterminedness",
)


def _digest(d: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.glob("*.json"))}


def _four_digits(x: float) -> float:
    return float(f"{x:.4g}")


@pytest.mark.slow  # ~6 s cold (imports), 1.5 s warm
@pytest.mark.parametrize("which", [0, 1], ids=["first", "second"])
def test_agentic_page_shows_the_published_values(agentic_dirs, which):
    from thoughtlens.report.published import page_data_from_published

    d = agentic_dirs[which]
    before = _digest(d)
    data = page_data_from_published(d, similarity=False)
    chunks = json.loads((d / "chunks_labeled.json").read_text())
    base = json.loads((d / "base_solution.json").read_text())
    assert len(data["sentences"]) == len(chunks) > 40
    n_values = 0
    for s, c in zip(data["sentences"], chunks):
        assert s["text"] == c["chunk"]
        for k in KEYS:
            if c.get(k) is not None:
                assert s["metrics"][k] == _four_digits(c[k]), (s["index"], k)
                n_values += 1
    assert n_values == sum(c.get(k) is not None for c in chunks for k in KEYS)
    labels = {m["key"]: m["label"] for m in data["metrics"]}
    assert labels["accuracy"] == "Blackmail rate of rollouts"
    assert labels["resampling_importance_accuracy"] == "Resampling importance (blackmail rate)"
    assert not any("accuracy" in v.lower() for v in labels.values())
    assert data["trace"]["answer"] == f"blackmail: {'yes' if base['contains_blackmail'] else 'no'}"
    located = sum(s["end"] > s["start"] for s in data["sentences"])
    assert located >= 0.95 * len(chunks)  # the sentences are placed in the shown solution text
    assert _digest(d) == before


@pytest.mark.slow  # writes the page through the CLI (~10 s)
def test_report_published_cli_opens_an_agentic_trace(agentic_dirs, tmp_path):
    from thoughtlens.cli import app

    out = tmp_path / "page.html"
    res = CliRunner().invoke(app, ["report", "--published", str(agentic_dirs[0]), "--no-similarity", "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    data = json.loads(re.search(r'id="tl-data">(.*?)</script>', page, re.S).group(1))
    assert data["outcome"]["label"] == "blackmail rate" and "Blackmail rate of rollouts" in page


@pytest.mark.slow  # the CLI reads a whole scenario (~5 s)
@pytest.mark.parametrize("which", [0, 1], ids=["first", "second"])
def test_anchors_show_published_prints_the_files_values(agentic_dirs, which):
    from thoughtlens.cli import app

    d = agentic_dirs[which]
    res = CliRunner().invoke(app, ["anchors", "show", "--published", str(d)], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert "blackmail rate" in res.output
    rows = {
        int(line.split("│")[1]): line.split("│")[3:-1]
        for line in res.output.splitlines()
        if line.startswith("│") and line.split("│")[1].strip().isdigit()
    }
    chunks = json.loads((d / "chunks_labeled.json").read_text())
    assert sorted(rows) == list(range(len(chunks)))
    # The table's first and third numeric columns: the rate and the resampling KL, straight from the file.
    for i, chunk in enumerate(chunks):
        for col, key in ((0, "accuracy"), (2, "resampling_importance_kl")):
            want = "-" if chunk.get(key) is None else f"{chunk[key]:.4f}"
            assert rows[i][col].strip() == want, (i, key)


def test_anchors_show_needs_a_store_or_a_published_dir():
    from thoughtlens.cli import app

    res = CliRunner().invoke(app, ["anchors", "show"])
    assert res.exit_code == 1 and "give exactly one of STORE or --published" in res.output
