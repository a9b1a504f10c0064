"""The documented examples of docs/represent.md and docs/thought_branches.md run as written: an SAE goes
through `splice_sae`, the shipped refusal prompts feed `represent directions`, the sentence-activations
example writes what `represent probe --control` reads, `represent probe -o` saves its table, an on-policy
condition the search gave up on reads as "not found", and `anchors run` documents only options it has."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from thoughtlens.anchors.branches.policy_edits import ConditionResult, Conditions
from thoughtlens.cli import app
from thoughtlens.cli.represent import _read_prompts
from thoughtlens.errors import ConfigError, HookError
from thoughtlens.model.interventions import splice
from thoughtlens.represent.sentence_activations import SentenceActivations, sentence_activations, token_ranges
from thoughtlens.sae import build_sae, splice_sae

DOCS = Path(__file__).resolve().parents[2] / "docs"
PROMPTS = Path(__file__).resolve().parents[2] / "thoughtlens" / "represent" / "data" / "refusal_prompts.json"


def test_docs_splice_an_sae_with_splice_sae_and_it_runs(tiny_lm):
    text = (DOCS / "represent.md").read_text()
    assert "splice_sae(model, sae, keep_error=True)" in text
    assert 'splice(model, "blocks.6.hook_resid_post", sae' not in text
    hook = "blocks.0.hook_resid_post"
    sae = build_sae(architecture="topk", d_in=tiny_lm.cfg.d_model, d_sae=32, k=4, hook_name=hook).eval()
    tokens = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        base = tiny_lm(tokens)
        with splice_sae(tiny_lm, sae, keep_error=True):
            kept = tiny_lm(tokens)
    assert torch.allclose(base, kept, atol=1e-4)
    with pytest.raises(HookError, match=r"splice_sae\(model, sae\)"), splice(tiny_lm, hook, sae):
        tiny_lm(tokens)


def test_on_policy_condition_not_found_is_no_key_error():
    conds = Conditions(kept=ConditionResult("kept", "", [True]), offpolicy=ConditionResult("offpolicy", "", [False]))
    missing = conds["onpolicy"]
    assert missing.found is False and missing.values == [] and missing.effect is None and missing.rate is None
    assert set(conds) == {"kept", "offpolicy"} and "onpolicy" not in conds and conds.get("onpolicy") is None
    assert conds["kept"].found is True
    with pytest.raises(KeyError, match="no condition 'bogus'"):
        conds["bogus"]
    assert "found=False" in (DOCS / "thought_branches.md").read_text()


def test_anchors_run_documents_only_options_it_has():
    text = (DOCS / "thought_branches.md").read_text()
    for option in ("--judge-url", "--judge-question", "--judge-model"):
        assert option not in text
    r = CliRunner().invoke(app, ["anchors", "run", "--help"], terminal_width=200)
    assert r.exit_code == 0 and "--outcome" in r.output and "--judge" not in r.output


def test_shipped_refusal_prompts_are_read_by_key(tmp_path):
    data = json.loads(PROMPTS.read_text())
    assert _read_prompts(f"{PROMPTS}:harmful") == data["harmful"]
    assert _read_prompts(f"{PROMPTS}:harmless") == data["harmless"]
    with pytest.raises(ConfigError, match=r"several prompt lists \(harmful, harmless\): pick one as .*:KEY"):
        _read_prompts(str(PROMPTS))
    with pytest.raises(ConfigError, match="has no list 'nope'"):
        _read_prompts(f"{PROMPTS}:nope")
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"prompts": ["a", "b"], "note": "x"}))
    assert _read_prompts(str(one)) == ["a", "b"]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(["a"]))
    assert _read_prompts(str(plain)) == ["a"]
    with pytest.raises(ConfigError, match="holds a list"):
        _read_prompts(f"{plain}:k")


def test_documented_directions_command_with_the_shipped_prompts(tiny_lm_dir, tmp_path):
    out = tmp_path / "refusal.safetensors"
    r = CliRunner().invoke(
        app,
        [
            "represent",
            "directions",
            "--positive",
            f"{PROMPTS}:harmful",
            "--negative",
            f"{PROMPTS}:harmless",
            "-o",
            str(out),
            "--model",
            tiny_lm_dir,
        ],
    )
    assert r.exit_code == 0, r.output
    assert out.is_file() and "60 vs 60" in " ".join(r.output.split())


SENTENCES = [
    ["First we add the numbers.", "Wait, that is wrong.", "So the answer is four."],
    ["First I check the units.", "Wait, one is missing.", "So we get ten."],
    ["First list the cases.", "Wait, recount them.", "So there are six."],
    ["First square both sides.", "Wait, the sign flips.", "So x is two."],
]


def test_documented_sentence_activations_feed_probe_control_and_output(tiny_lm, tmp_path):
    parts = []
    for k, sents in enumerate(SENTENCES):  # the docs' example, one trace at a time
        text = " ".join(sents)
        spans, at = [], 0
        for s in sents:
            spans.append((at, at + len(s)))
            at += len(s) + 1
        tokens, ranges = token_ranges(tiny_lm, text, spans)
        acts = sentence_activations(
            tiny_lm, tokens, ranges, hooks="resid_post", meta={"trace_id": f"p{k}"}, texts=[text[a:b] for a, b in spans]
        )
        acts.meta["category"] = ["plan", "check", "answer"]
        parts.append(acts)
    path = tmp_path / "acts.npz"
    SentenceActivations.concat(parts).to_npz(path)
    assert list(SentenceActivations.from_npz(path).meta["text"][:2]) == SENTENCES[0][:2]
    for name in ("probe.csv", "probe.json"):
        out = tmp_path / name
        r = CliRunner().invoke(
            app,
            [
                "represent",
                "probe",
                str(path),
                "--target",
                "category",
                "--group",
                "trace_id",
                "--control",
                "--splits",
                "2",
                "--layers",
                "0,1",
                "-o",
                str(out),
            ],
        )
        assert r.exit_code == 0, r.output
        rows = pd.read_csv(out).to_dict("records") if name.endswith(".csv") else json.loads(out.read_text())["rows"]
        assert [row["layer"] for row in rows] == [0, 1]
        assert {"accuracy", "ci_low", "ci_high", "control", "selectivity"} <= set(rows[0])
        assert rows[0]["control"] is not None and rows[0]["control"] == rows[0]["control"]
    bare = SentenceActivations.concat(parts)
    bare.meta = bare.meta.drop(columns=["text"])
    bare.to_npz(tmp_path / "bare.npz")
    r = CliRunner().invoke(app, ["represent", "probe", str(tmp_path / "bare.npz"), "--control", "--splits", "2"])
    assert r.exit_code == 1 and "texts=SENTENCES" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["represent", "probe", str(path), "-o", str(tmp_path / "t.txt")])
    assert r.exit_code == 1 and "name a .csv or .json file" in r.output
    with pytest.raises(ConfigError, match="texts has 1 entries for 3 sentences"):
        sentence_activations(tiny_lm, tokens, ranges, texts=["x"])
