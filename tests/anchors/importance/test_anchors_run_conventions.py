"""The anchors job with a scripted sampler (no model): completion rules and forced reading are wired in,
the conventions are recorded in the run config, and the sentence-to-sentence graph is stored."""

from __future__ import annotations

import numpy as np

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun, answer_complete
from thoughtlens.anchors.importance.definitions import conventions_label
from thoughtlens.sample.base import Completion
from thoughtlens.store.run_store import RunStore

PROMPT = "<｜User｜>What is 3 + 4?<｜Assistant｜><think>\n"
TRACE = "First add three and four. That makes seven in total.\n</think>\n\nThe answer is \\boxed{7}."
# A reasoning rollout with a hedged guess inside the think block, then the real answer after it.
ROLLOUT = "Maybe it is \\boxed{6}. No, three plus four is seven.\n</think>\n\nSo \\boxed{7}. Extra text."
FORCED = "-\\frac{5}{12}} and then more"


class ScriptedSampler:
    """Streams a fixed text character by character and stops where the job's `answer_done` says so,
    like HFSampler does token by token."""

    name = "scripted"

    def __init__(self):
        self.answer_done = None
        self.prefixes: list[str] = []

    def sample(self, requests, params, on_completion=None):
        out = []
        for p, req in enumerate(requests):
            self.prefixes.append(req.prefix)
            script = FORCED if req.prefix.endswith("\\boxed{") else ROLLOUT
            for j in req.sample_indices:
                text, reason = script, "stop"
                for k in range(1, len(script) + 1):
                    if self.answer_done is not None and self.answer_done(script[:k]):
                        text, reason = script[:k], "answer"
                        break
                c = Completion(p, j, text, len(text), reason)
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


def _run(tmp_path, sampler=None, name="s.sqlite", **cfg):
    store = RunStore(tmp_path / name)
    config = AnchorsConfig(n_rollouts=2, label_categories=False, **cfg)
    job = AnchorsRun(sampler or ScriptedSampler(), store, config)
    job.run([Problem("p0", "What is 3 + 4?", PROMPT, "7", base_completion=TRACE)])
    return store, job


def test_reasoning_rollouts_run_past_hedged_guesses_and_forced_answers_are_read_whole(tmp_path):
    store, job = _run(tmp_path, counterfactual_matrix=False)
    df = store.rollouts(job.run_id)
    resampled, forced = df[df["condition"] == "resampled"], df[df["condition"] == "forced"]
    assert set(resampled["text"]) == {
        "Maybe it is \\boxed{6}. No, three plus four is seven.\n</think>\n\nSo \\boxed{7}"
    }
    assert set(resampled["answer"]) == {"7"} and resampled["is_correct"].all()
    assert set(forced["text"]) == {"-\\frac{5}{12}}"} and set(forced["answer"]) == {"-\\frac{5}{12}"}
    # paper conventions: the paper's forcing text, after a prefix with no dangling whitespace
    assert all(
        p.endswith(".\n</think>\n\nTherefore, the final answers is \\boxed{")
        or p.endswith("<think>\n\n</think>\n\nTherefore, the final answers is \\boxed{")
        for p in job.sampler.prefixes
        if p.endswith("\\boxed{")
    )
    assert job.sampler.answer_done is None  # the job's rule was removed again
    # The CLI builds its sampler with answer_done=answer_complete, the README example without one: same rollouts.
    cli_sampler = ScriptedSampler()
    cli_sampler.answer_done = answer_complete
    store2, job2 = _run(tmp_path, cli_sampler, "cli.sqlite", counterfactual_matrix=False)
    a = store.rollouts(job.run_id).drop(columns=["created_at"])
    b = store2.rollouts(job2.run_id).drop(columns=["created_at"])
    assert a.equals(b) and cli_sampler.answer_done is answer_complete


def test_conventions_are_recorded_and_old_runs_say_pre_1_0(tmp_path):
    store, job = _run(tmp_path, counterfactual_matrix=False, conventions="thoughtlens")
    (run,) = store.runs()
    assert run["config"]["conventions"] == "thoughtlens" and run["config"]["kl_alpha"] == 0.5
    assert conventions_label(run["config"]).startswith("thoughtlens")
    old = {k: v for k, v in run["config"].items() if k not in ("conventions", "split_style", "counterfactual_matrix")}
    assert conventions_label(old) == "pre-1.0 conventions"
    assert conventions_label(AnchorsConfig().__dict__).startswith("paper: the paper's definitions")


def test_counterfactual_matrix_is_stored_with_the_papers_shape(tmp_path):
    store, job = _run(tmp_path)
    n = len(store.trace(job.run_id, "p0")["sentences"])
    m = np.asarray(store.get_artifact(job.run_id, "counterfactual_matrix", "p0"))
    assert m.shape == (n, n)
    assert np.allclose(np.tril(m), 0)  # only later sentences are affected


def test_a_store_written_before_conventions_still_opens_and_says_pre_1_0(tmp_path):
    import json
    import sqlite3

    from thoughtlens.report.from_store import page_data_from_store

    store, job = _run(tmp_path, counterfactual_matrix=False)
    new = page_data_from_store(store, job.run_id, similarity=False)
    assert "paper: the paper's definitions" in new["notes"]["conventions"]
    assert "normalize_answer" in new["notes"]["conventions"]  # the remaining deviations are listed
    # The same store as an older thoughtlens wrote it: no conventions, split_style, counterfactual_matrix.
    old = {
        k: v
        for k, v in store.runs()[0]["config"].items()
        if k not in ("conventions", "split_style", "counterfactual_matrix")
    } | {"kl_alpha": 0.5}
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE runs SET config=? WHERE run_id=?", (json.dumps(old), job.run_id))
    data = page_data_from_store(tmp_path / "s.sqlite", job.run_id, similarity=False)
    assert data["notes"]["conventions"].startswith("Metric definitions: pre-1.0 conventions")
