"""FleetSampler: rollouts spread over several servers, a dead server's requests retried elsewhere and reported,
every rollout delivered exactly once; then for real with two llama.cpp servers, one killed mid-run."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from fake_openai_server import FakeOpenAIServer, text_for

from thoughtlens.errors import BackendError
from thoughtlens.sample.base import SamplingParams, requests_for, rollout_seed
from thoughtlens.sample.fleet import FleetSampler, read_url_file
from thoughtlens.sample.openai import OpenAIClient
from thoughtlens.sample.registry import make_sampler

PARAMS = SamplingParams(temperature=1.0, max_new_tokens=8, seed=5)


def _fleet(*urls: str, concurrency: int = 2) -> FleetSampler:
    clients = [
        OpenAIClient(u, max_retries=1, concurrency=concurrency, backoff_base=0.01, backoff_max=0.05, timeout=5)
        for u in urls
    ]
    return FleetSampler(clients)


def test_work_is_spread_and_each_rollout_arrives_once_with_its_own_seed():
    a, b = FakeOpenAIServer(delay_s=0.02), FakeOpenAIServer(delay_s=0.02)
    try:
        fleet = _fleet(a.url, b.url)
        seen = []
        out = fleet.sample(requests_for(["P0", "P1"], 12), PARAMS, on_completion=seen.append)
    finally:
        a.stop()
        b.stop()
    assert Counter((c.prefix_index, c.sample_index) for c in seen) == {(p, s): 1 for p in range(2) for s in range(12)}
    assert [(c.prefix_index, c.sample_index) for c in out] == [(p, s) for p in range(2) for s in range(12)]
    for c in out:  # the text is what the fake server derives from this rollout's own seed
        assert c.text == text_for(rollout_seed(5, f"P{c.prefix_index}", c.sample_index), "")
    assert a.answered > 0 and b.answered > 0 and a.answered + b.answered == 24
    assert not any(s.dead for s in fleet.servers)


def test_a_server_killed_mid_run_is_reported_and_its_work_done_elsewhere():
    a, b = FakeOpenAIServer(delay_s=0.01), FakeOpenAIServer(delay_s=0.01)
    fleet = _fleet(a.url, b.url)
    seen = []
    killed = threading.Event()

    def on_completion(c):
        seen.append(c)
        if len(seen) == 5 and not killed.is_set():
            killed.set()
            b.stop()  # connections to b are refused from now on

    try:
        out = fleet.sample(requests_for(["P0", "P1", "P2"], 10), PARAMS, on_completion=on_completion)
    finally:
        a.stop()
    assert Counter((c.prefix_index, c.sample_index) for c in seen) == {(p, s): 1 for p in range(3) for s in range(10)}
    assert all(c.finish_reason != "error" for c in out), [c.error for c in out if c.error]
    assert a.answered + b.answered == 30  # nothing answered twice, nothing lost
    dead = [s for s in fleet.servers if s.dead]
    assert [s.base_url for s in dead] == [b.url]
    summary = fleet.summary()
    assert f"{b.url}: " in summary and "DEAD" in summary and f"{a.url}: {a.answered} rollouts" in summary


def test_all_servers_dead_gives_error_rollouts_not_a_hang():
    a = FakeOpenAIServer()
    fleet = _fleet(a.url, "http://127.0.0.1:9/v1")  # port 9 (discard): refused
    fleet.check()
    assert fleet.servers[1].dead and not fleet.servers[0].dead
    a.stop()
    out = fleet.sample(requests_for(["P0"], 4), PARAMS)
    assert len(out) == 4 and all(c.finish_reason == "error" for c in out)
    assert all(s.dead for s in fleet.servers)


def test_fleet_refuses_mixed_models_and_duplicate_urls(tmp_path):
    a, b = FakeOpenAIServer("model-a"), FakeOpenAIServer("model-b")
    try:
        with pytest.raises(BackendError, match="the fleet mixes models: .*'model-a'.*'model-b'"):
            _fleet(a.url, b.url).check()
        with pytest.raises(BackendError, match="given twice"):
            _fleet(a.url, a.url + "/")
    finally:
        a.stop()
        b.stop()
    with pytest.raises(BackendError, match="no server of the fleet answers"):
        _fleet("http://127.0.0.1:9/v1").check()


def test_registry_builds_a_fleet_from_several_urls_and_reads_url_files(tmp_path):
    f = tmp_path / "urls.txt"
    f.write_text("# my servers\nhttp://10.0.0.1:8000/v1\n\nhttp://10.0.0.2:8000  # node 2\n")
    urls = read_url_file(f)
    assert urls == ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000"]
    fleet = make_sampler("openai", base_url=urls, concurrency=3)
    assert isinstance(fleet, FleetSampler) and fleet.concurrency == 6
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(BackendError, match="holds no base URL"):
        read_url_file(tmp_path / "empty.txt")


# ---- for real: two llama.cpp servers, one killed mid-run -------------------------------------------


@pytest.mark.slow
@pytest.mark.server
def test_anchors_run_survives_a_llama_server_killed_mid_run(tmp_path, monkeypatch):
    from servers import LlamaServer, require_llama_cpp

    from thoughtlens.anchors.config import AnchorsConfig, Problem
    from thoughtlens.anchors.importance.black_box import AnchorsRun
    from thoughtlens.store.run_store import RunStore

    require_llama_cpp()
    # The metrics (and the embedding model they load) are not what this test is about.
    monkeypatch.setattr(AnchorsRun, "_metrics", lambda self, problem, trace: [])
    s1 = LlamaServer(tmp_path, n_threads=1)
    try:
        s2 = LlamaServer(tmp_path, n_threads=1)
        try:
            sampler = make_sampler("openai", base_url=[s1.url, s2.url], concurrency=2, timeout=60)
            config = AnchorsConfig(n_rollouts=6, max_new_tokens=12, forced=False, label_categories=False, seed=1)
            trace = "Gold is silver plus 30. Gold plus silver is 110. So silver is 40. The answer is \\boxed{70}."
            problem = Problem("p0", "coins", "Q: Gretchen has 110 coins...\nA:", "70", base_completion=trace)
            store = RunStore(tmp_path / "fleet.sqlite")
            job = AnchorsRun(sampler, store, config)
            committed = []
            original = store.add_rollout

            def add_rollout(*args, **kw):  # count every commit, and kill server 2 after the 4th
                committed.append(args[1:5])
                if len(committed) == 4:
                    s2.kill()
                return original(*args, **kw)

            monkeypatch.setattr(store, "add_rollout", add_rollout)
            job.run([problem])
        finally:
            s2.stop()
    finally:
        s1.stop()
    df = store.rollouts(job.run_id)
    n_expected = (len(store.trace(job.run_id, "p0")["sentences"]) + 1) * 6  # every prefix, 6 rollouts each
    assert len(df) == n_expected and len(committed) == n_expected  # every rollout stored, each once
    assert not df.duplicated(["problem_id", "sentence_index", "condition", "sample_index"]).any()
    assert (df["finish_reason"] != "error").all(), df[df["finish_reason"] == "error"]["error"].tolist()
    assert [s.base_url for s in sampler.servers if s.dead] == [s2.url]
    assert f"{s2.url}: " in sampler.summary() and "DEAD" in sampler.summary()
    # The stored provenance names both servers, credential-free.
    assert store.run(job.run_id)["config"]["base_url"] == ",".join(sorted([s1.url, s2.url]))
