"""Provenance: runs record backend, served model, credential-free URL and tokenizer identity; a forced run id
is never resumed from another served model or tokenizer; no key or credential-bearing URL reaches store or logs."""

from __future__ import annotations

import base64
import logging
from dataclasses import asdict

import pytest
from fake_openai_server import FakeOpenAIServer

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun
from thoughtlens.errors import BackendError, StoreError
from thoughtlens.sample.openai import OpenAIClient, OpenAISampler
from thoughtlens.sample.provenance import redact_url
from thoughtlens.sample.registry import make_sampler
from thoughtlens.store.run_store import RunStore

SECRET = "sk-live-SECRET-0123456789-never-store-me"
PASSWORD = "pw-SECRET-in-url-9876"
CONFIG = AnchorsConfig(n_rollouts=2, max_new_tokens=8, forced=False, label_categories=False, backend="openai")
TRACE = "First, add the numbers. Then check the sum. So the answer is \\boxed{5}."
PROBLEM = Problem("p0", "What is 2 + 3?", "Q: What is 2 + 3?\nA:", "5", base_completion=TRACE)


@pytest.fixture(autouse=True)
def _no_metrics(monkeypatch):
    """Provenance is settled before any metric is computed; skipping them (and the embedding model they
    load) keeps these tests at a second each."""
    monkeypatch.setattr(AnchorsRun, "_metrics", lambda self, problem, trace: [])


@pytest.fixture
def servers():
    a, b = FakeOpenAIServer("model-a"), FakeOpenAIServer("model-b")
    yield a, b
    a.stop()
    b.stop()


def _run(url: str, store: RunStore, run_id: str | None = None, tokenizer=None) -> AnchorsRun:
    sampler = OpenAISampler(OpenAIClient(url, api_key_env="TL_PROVENANCE_KEY", max_retries=0), tokenizer)
    job = AnchorsRun(sampler, store, CONFIG, run_id)
    job.run([PROBLEM])
    return job


def test_run_records_the_served_model_and_url_not_a_local_default(servers, tmp_path):
    a, _ = servers
    store = RunStore(tmp_path / "s.sqlite")
    job = _run(a.url, store)
    stored = store.run(job.run_id)["config"]
    # The model comes from the server's /v1/models, not from the (empty) config the caller built.
    assert (stored["backend"], stored["model"], stored["base_url"]) == ("openai", "model-a", a.url)
    # The run id is the hash of that stored config (an independent re-derivation of AnchorsConfig.run_id).
    import hashlib
    import json

    expected = "anchors-" + hashlib.sha1(json.dumps(stored, sort_keys=True).encode()).hexdigest()[:10]
    assert job.run_id == expected


def test_another_served_model_is_a_new_run_not_a_resume(servers, tmp_path):
    a, b = servers
    store = RunStore(tmp_path / "s.sqlite")
    first, second = _run(a.url, store), _run(b.url, store)
    assert first.run_id != second.run_id and not second.resumed
    assert len(store.rollouts(first.run_id)) == len(store.rollouts(second.run_id)) == 4 * 2


def test_resuming_a_forced_run_id_from_another_served_model_is_refused(servers, tmp_path):
    a, b = servers
    store = RunStore(tmp_path / "s.sqlite")
    _run(a.url, store, run_id="fixed")
    n_before = len(store.rollouts("fixed"))
    with pytest.raises(StoreError) as err:
        _run(b.url, store, run_id="fixed")
    msg = str(err.value)
    assert "\n" not in msg and "'model-a'" in msg and "'model-b'" in msg and "--run-id" in msg
    assert len(store.rollouts("fixed")) == n_before  # nothing of model-b was mixed in
    # The same server resumes it.
    assert _run(a.url, store, run_id="fixed").resumed


def test_resuming_with_another_tokenizer_is_refused(servers, tmp_path, smol_tokenizer, tiny_lm_dir):
    from transformers import AutoTokenizer

    a, _ = servers
    store = RunStore(tmp_path / "s.sqlite")
    _run(a.url, store, run_id="fixed", tokenizer=smol_tokenizer)
    other = AutoTokenizer.from_pretrained(tiny_lm_dir)
    other.chat_template = "{{ messages[0]['content'] }}"  # same vocabulary, another prompt format
    with pytest.raises(
        StoreError, match=r"tokenizer 'tokenizer-sha256:\w+' but this run uses tokenizer 'tokenizer-sha256:\w+'"
    ):
        _run(a.url, store, run_id="fixed", tokenizer=other)


def test_no_key_or_credential_reaches_the_store_or_logs(servers, tmp_path, monkeypatch, caplog):
    a, _ = servers
    monkeypatch.setenv("TL_PROVENANCE_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # httpx/httpcore log every request at DEBUG
    port = a.server_address[1]
    url = f"http://user:{PASSWORD}@127.0.0.1:{port}/v1"
    store_path = tmp_path / "s.sqlite"
    store = RunStore(store_path)
    job = _run(a.url, store)  # the key from the environment
    monkeypatch.delenv("TL_PROVENANCE_KEY")
    job = _run(url, store, run_id="creds")  # the credentials in the URL (basic auth)
    # The key and the URL's credentials were sent (so the test would see a leak if they were stored)...
    assert f"Bearer {SECRET}" in a.auth_headers
    assert any(
        PASSWORD in base64.b64decode(h.split()[1]).decode() for h in a.auth_headers if h and h.startswith("Basic")
    )
    # ...yet appear nowhere in what the runs left behind: the store file, the config, reprs, log records.
    store.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("s.sqlite*"))
    assert SECRET.encode() not in blob and PASSWORD.encode() not in blob and b"user:" not in blob
    assert job.config.base_url == f"http://127.0.0.1:{port}/v1"
    assert SECRET not in repr(job.sampler) and PASSWORD not in repr(job.sampler)
    logged = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    assert SECRET not in logged and PASSWORD not in logged
    # A dead server's error message (which is stored with the rollout) does not carry them either.
    a.stop()
    sampler = make_sampler("openai", base_url=url, api_key_env="TL_PROVENANCE_KEY", max_retries=0)
    with pytest.raises(BackendError) as err:
        sampler.provenance()
    assert PASSWORD not in str(err.value) and "127.0.0.1" in str(err.value)


def test_credentials_in_a_query_string_are_refused_without_echoing_them():
    with pytest.raises(BackendError) as err:
        OpenAIClient(f"https://api.example.com/v1?api-key={SECRET}")
    assert SECRET not in str(err.value) and "--api-key-env" in str(err.value)
    with pytest.raises(BackendError) as err:
        OpenAIClient(f"ftp://u:{PASSWORD}@host/v1")
    assert PASSWORD not in str(err.value)


def test_redact_url():
    assert redact_url(f"https://me:{PASSWORD}@h.example:8443/v1?key={SECRET}#x") == "https://h.example:8443/v1"
    assert redact_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"


def test_provenance_keys_reach_the_run_id(servers, tmp_path):
    """Every provenance field changes the run id (so none can be silently mixed)."""
    base = AnchorsConfig()
    ids = {base.run_id()}
    for key, value in (("backend", "openai"), ("model", "m"), ("base_url", "http://x/v1"), ("tokenizer", "t")):
        cfg = AnchorsConfig(**{**asdict(base), key: value})
        ids.add(cfg.run_id())
    assert len(ids) == 5
