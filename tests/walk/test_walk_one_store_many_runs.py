"""A new user's walk through one store: `anchors run`, `branches resilience`, `branches intervene`,
`sae store-features`, `report` and `anchors show` on the same a.sqlite. The store ends up holding anchors,
resilience and intervention runs; every command still exits 0, uses the anchors run by default and names the
run it used. A prefix whose rollouts state no answer is scored alike by `anchors show` and by resilience's
counterfactual++."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from thoughtlens.cli import app
from thoughtlens.sae import build_sae, save_sae
from thoughtlens.sample.base import Completion
from thoughtlens.sample.registry import register_sampler
from thoughtlens.store.run_store import RunStore, run_kind

TRACE = (
    "We need to compute three plus five minus two. First, we add three and five to get eight. "
    "Then we subtract two, which gives six. Let me double check this result. So the answer is \\boxed{6}."
)
QUESTION = "What is 3 + 5 - 2?"
MUTE_AFTER = "First, we add"  # rollouts from a prefix holding sentence 1 state no answer


class _WalkSampler:
    """Answers 6, except from prefixes that hold sentence 1 of the trace: there it states no answer."""

    name = "walk-scripted"
    tokenizer = None

    def sample(self, requests, params, on_completion=None):
        out = []
        for k, req in enumerate(requests):
            for j in req.sample_indices:
                mute = MUTE_AFTER in req.prefix
                if params.stop == ("}",):
                    text = "" if mute else "6"
                else:
                    text = " I am not sure yet." if mute else " Next we finish. So the answer is \\boxed{6}."
                c = Completion(k, j, text, 5, "stop")
                if on_completion:
                    on_completion(c)
                out.append(c)
        return out


class _HashEmbedder:
    """Stands in for MiniLM: a fixed unit vector per distinct text (equal texts: cosine 1, others ~0)."""

    def encode(self, texts, **_):
        rows = []
        for t in texts:
            rng = np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16))
            v = rng.standard_normal(384).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows) if rows else np.zeros((0, 384), np.float32)


@pytest.fixture
def walk_env(monkeypatch, tmp_path, tiny_lm_dir):
    register_sampler("walk-scripted", lambda **_: _WalkSampler())
    monkeypatch.setattr("thoughtlens.anchors.importance.similarity.load_embedder", lambda *a, **k: _HashEmbedder())
    monkeypatch.chdir(tmp_path)
    trace = tmp_path / "trace.txt"
    trace.write_text(TRACE)
    return tmp_path, trace, ["--backend", "walk-scripted", "--model", tiny_lm_dir]


def _ok(args):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, f"{' '.join(args)}:\n{r.output}\n{r.exception!r}"
    return r.output


def test_one_store_through_every_command(walk_env):
    tmp, trace, engine = walk_env
    store = str(tmp / "a.sqlite")
    out = _ok(
        [
            "anchors",
            "run",
            "--problem",
            QUESTION,
            "--answer",
            "6",
            "--trace",
            str(trace),
            "-n",
            "2",
            "--max-new-tokens",
            "16",
            "--no-forced",
            "--no-counterfactual-matrix",
            "--store",
            store,
            *engine,
        ]
    )
    with RunStore(store) as s:
        (anchors_run,) = [r["run_id"] for r in s.runs()]
    assert anchors_run.startswith("anchors-") and anchors_run in out

    out = _ok(
        [
            "branches",
            "resilience",
            store,
            "--sentence",
            "1",
            "--trials",
            "2",
            "--max-iterations",
            "2",
            "--max-new-tokens",
            "16",
            *engine,
        ]
    )
    assert f"run {anchors_run} (the only anchors run" in out
    # the rollouts from prefix 2 state no answer: the anchors run's accuracy there is 0.0, and so is rate kept
    assert "rate kept 0.00 - rate gone 1.00 = -1.00" in out
    assert not re.search(r"= -(\s|$)| - - ", out)
    assert "no answer is left out; 0 when none answered" in out
    assert "results: run resilience-" in out

    out = _ok(
        [
            "branches",
            "intervene",
            store,
            "--sentence",
            "1",
            "--target",
            "doubt",
            "--rollouts",
            "2",
            "--iterations",
            "1",
            "--candidates",
            "2",
            "--continuations",
            "2",
            "--max-new-tokens",
            "16",
            *engine,
        ]
    )
    assert f"run {anchors_run} (the only anchors run" in out and "results: run intervene-" in out

    with RunStore(store) as s:
        kinds = sorted(run_kind(r["run_id"], r["config"]) for r in s.runs())
    assert kinds == ["anchors", "intervention", "resilience"]

    torch.manual_seed(0)  # a random SAE on the tiny model's last residual stream: the panel's data, not its meaning
    sae = build_sae(architecture="topk", d_in=32, d_sae=64, k=4, hook_name="blocks.1.hook_resid_post")
    sae_dir = str(save_sae(sae, tmp / "sae"))
    out = _ok(["sae", "store-features", sae_dir, store, "--model", engine[-1], "--top", "2", "--tokens", "2"])
    assert f"run {anchors_run} (the only anchors run" in out and "stored SAE features of 1 trace" in out

    out = _ok(["report", store, "--no-similarity", "-o", str(tmp / "page.html")])
    assert f"run {anchors_run} (the only anchors run" in out and "also in the store" in out
    assert (tmp / "page.html").is_file()

    out = _ok(["anchors", "show", store])
    assert f"run {anchors_run} (the only anchors run" in out
    row2 = next(line for line in out.splitlines() if re.match(r"\W*2\W", line))
    assert "0.00" in row2  # the same prefix: accuracy 0.00, as resilience's rate kept
    assert not re.search(r"\s-\s*[│|]", out)  # no bare "-" for a missing value

    out = _ok(["branches", "outcome", store])
    assert f"run {anchors_run}" in out


def test_latest_anchors_run_is_picked_and_the_others_listed(walk_env):
    tmp, trace, engine = walk_env
    store = str(tmp / "a.sqlite")
    base = [
        "anchors",
        "run",
        "--problem",
        QUESTION,
        "--answer",
        "6",
        "--trace",
        str(trace),
        "--max-new-tokens",
        "16",
        "--no-forced",
        "--no-counterfactual-matrix",
        "--store",
        store,
        *engine,
    ]
    _ok(base + ["-n", "1"])
    _ok(
        [
            "branches",
            "resilience",
            store,
            "--sentence",
            "0",
            "--trials",
            "1",
            "--max-iterations",
            "1",
            "--max-new-tokens",
            "16",
            *engine,
        ]
    )
    _ok(base + ["-n", "2"])
    with RunStore(store) as s:
        first, _, second = [r["run_id"] for r in s.runs()]
    out = _ok(["anchors", "show", store])
    assert f"run {second} (latest of 2 anchors runs; others: {first}" in out
    out = _ok(["anchors", "show", store, "--run", first])
    assert f"{first}" in out
