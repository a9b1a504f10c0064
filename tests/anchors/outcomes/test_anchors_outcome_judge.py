"""An LLM judge as the anchors outcome, served by a fake OpenAI-compatible server on 127.0.0.1 and asked
through thoughtlens's OpenAIClient: the prompt is stored with the run, garbage replies are retried and
then recorded as unknown, and the importance equals a hand computation from the stored rollouts."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_anchors_outcomes import PROMPT, TRACE, PlantedSampler, _rate

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun
from thoughtlens.anchors.outcomes.judge import JudgeOutcome, parse_verdict
from thoughtlens.errors import ConfigError
from thoughtlens.sample.openai import OpenAIClient
from thoughtlens.store.run_store import RunStore


class _Judge(BaseHTTPRequestHandler):
    """Says yes iff the transcript mentions "seven"; garbage for transcripts with "Bananas" (always) and
    for the first request about any transcript with "check" (then a valid answer)."""

    def log_message(self, *args):  # quiet
        pass

    def _send(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"data": [{"id": "fake-judge"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][0]["content"]
        transcript = content.split("<<<", 1)[1]
        srv = self.server
        with srv.lock:
            srv.prompts.append(content)
            seen = srv.seen.get(transcript, 0)
            srv.seen[transcript] = seen + 1
        if "Bananas" in transcript or ("check" in transcript and seen == 0):
            reply = "I cannot decide, sorry."
        else:
            reply = "<answer>yes</answer>" if "seven" in transcript else "<answer>no</answer>"
        self._send({"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]})


@pytest.fixture
def judge_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    srv.lock, srv.prompts, srv.seen = threading.Lock(), [], {}
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.slow  # MiniLM load
def test_judge_outcome_end_to_end(judge_server, tmp_path):
    client = OpenAIClient(
        f"http://127.0.0.1:{judge_server.server_port}/v1", timeout=5, max_retries=0, api_key_env="TL_NO_KEY"
    )
    judge = JudgeOutcome("mentions_seven", "Does the transcript mention the number seven?", client, attempts=2)
    store = RunStore(tmp_path / "s.sqlite")
    config = AnchorsConfig(
        n_rollouts=4, label_categories=False, counterfactual_matrix=False, forced=False, outcome=judge.spec
    )
    job = AnchorsRun(PlantedSampler(), store, config, outcome=judge.outcome())
    problem = Problem("p0", "What is 3 + 4?", PROMPT, "7", base_completion=TRACE)
    job.run([problem])

    definition = store.get_artifact(job.run_id, "outcome_definition")
    assert definition["question"] == judge.question and definition["template"] == judge.template
    assert definition["model"] == "fake-judge" and store.runs()[0]["config"]["outcome"] == judge.spec
    df = store.rollouts(job.run_id)
    res = df[df["condition"] == "resampled"]
    grade = lambda t: None if "Bananas" in t else "seven" in t  # noqa: E731  (what the fake judge decides)
    got = store.metrics(job.run_id, "p0")
    for i in range(len(got)):
        vals = [grade(t) for t in res[res["sentence_index"] == i]["text"]]
        nxt = [grade(t) for t in res[res["sentence_index"] == i + 1]["text"]]
        assert got.loc[i, "accuracy"] == pytest.approx(_rate(vals), abs=1e-12)
        if i + 1 < len(got):
            assert got.loc[i, "resampling_importance_accuracy"] == pytest.approx(_rate(nxt) - _rate(vals), abs=1e-12)
    # garbage: retried (attempts=2), then unknown with the reply in the error; "check" ones recovered on retry
    summary = store.get_artifact(job.run_id, "outcome_summary", "p0")
    n_bananas = int(res["text"].str.contains("Bananas").sum())
    assert summary["n_unknown"] == summary["n_errors"] == n_bananas > 0
    assert "cannot decide" in summary["first_error"]
    assert any(v >= 2 for t, v in judge_server.seen.items() if "check" in t and "Bananas" not in t)

    # resume: every grade is in the store, the judge is not asked again
    asked = len(judge_server.prompts)
    AnchorsRun(PlantedSampler(), store, config, outcome=judge.outcome()).run([problem])
    assert len(judge_server.prompts) == asked


def test_verdict_parsing_and_bad_judges():
    assert parse_verdict("<answer> YES </answer>") is True and parse_verdict("No, it does not.") is False
    assert parse_verdict("maybe") is None and parse_verdict("<answer>yes</answer><answer>no</answer>") is None
    with pytest.raises(ConfigError, match="question is empty"):
        JudgeOutcome("x", " ", client=None)
    with pytest.raises(ConfigError, match=r"\{text\}"):
        JudgeOutcome("x", "q?", client=None, template="no slot")
    with pytest.raises(ConfigError, match="build the config with outcome"):
        AnchorsRun(PlantedSampler(), None, AnchorsConfig(), outcome=JudgeOutcome("x", "q?", client=None).outcome())
