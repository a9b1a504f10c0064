"""OpenAIClient / OpenAISampler against a loopback fault server: retries, exact-once delivery, errors, secrets."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from thoughtlens.errors import BackendError, ConfigError
from thoughtlens.sample.base import SamplingParams, requests_for, rollout_seed
from thoughtlens.sample.openai import OpenAIClient, OpenAISampler

SECRET = "sk-test-0123456789abcdef-do-not-leak"
FAULTS = ("500", "429", "hang", "malformed")


class _FaultServer(ThreadingHTTPServer):
    """Fails `fault_rate` of /v1/completions requests (drawn from a seeded RNG), else answers
    `echo <seed> <prompt>` so the test can check each completion belongs to its own request."""

    daemon_threads = True

    def __init__(self, fault_rate: float, always: str | None = None, hang_s: float = 1.5):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fault_rate, self.always, self.hang_s = fault_rate, always, hang_s
        self.rng = random.Random(1234)
        self.lock = threading.Lock()
        self.faults: Counter[str] = Counter()
        self.auth_headers: list[str | None] = []
        self.bodies: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.models_status, self.models_body = 200, {"object": "list", "data": [{"id": "fake-model"}]}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def draw(self) -> str | None:
        with self.lock:
            if self.always == "first_ok":  # one success, then failures forever
                self.always = "500"
                return None
            if self.always:
                return self.always
            r = self.rng.random()
            fault = FAULTS[int(r / self.fault_rate * len(FAULTS))] if r < self.fault_rate else None
            if fault:
                self.faults[fault] += 1
            return fault


class _Handler(BaseHTTPRequestHandler):
    server: _FaultServer

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        self.server.auth_headers.append(self.headers.get("Authorization"))
        self._send(self.server.models_status, json.dumps(self.server.models_body).encode())

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.auth_headers.append(self.headers.get("Authorization"))
            srv.bodies.append(body)
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self._answer(body, srv.draw())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a hung request
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _answer(self, body: dict, fault: str | None) -> None:
        if fault == "500":
            return self._send(500, b'{"error": "boom"}')
        if fault == "429":
            return self._send(429, b'{"error": "slow down"}', {"Retry-After": "0.01"})
        if fault == "400":
            return self._send(400, b'{"error": "bad request"}')
        if fault == "hang":
            time.sleep(self.server.hang_s)
        if fault == "malformed":
            return self._send(200, b'{"choices": [{"text": "trunc')
        text = f"echo {body['seed']} {body['prompt']}"
        payload = {
            "choices": [{"text": text, "index": 0, "finish_reason": "length"}],
            "usage": {"completion_tokens": 7},
        }
        self._send(200, json.dumps(payload).encode())


@pytest.fixture
def fault_server(request):
    kwargs = getattr(request, "param", {"fault_rate": 0.3})
    srv = _FaultServer(**kwargs)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _client(url: str, **kw) -> OpenAIClient:
    opts = dict(
        timeout=0.5, max_retries=10, concurrency=4, backoff_base=0.01, backoff_max=0.05, api_key_env="TL_TEST_KEY"
    )
    opts.update(kw)
    return OpenAIClient(url, **opts)


def test_every_rollout_arrives_once_despite_30_percent_faults(fault_server, monkeypatch, caplog):
    monkeypatch.setenv("TL_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # capture httpx / httpcore internals too
    prefixes = ["Alpha. ", "Beta beta. ", "Gamma? "]
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=16, stop=("\n\n",), seed=5)
    seen = []
    client = _client(fault_server.url)
    out = OpenAISampler(client).sample(requests_for(prefixes, 10), params, on_completion=seen.append)

    assert Counter((c.prefix_index, c.sample_index) for c in seen) == Counter(
        {(p, s): 1 for p in range(3) for s in range(10)}
    )
    assert [(c.prefix_index, c.sample_index) for c in out] == [(p, s) for p in range(3) for s in range(10)]
    for c in out:
        assert c.error is None and c.finish_reason == "length" and c.n_tokens == 7
        prefix = prefixes[c.prefix_index]
        assert c.text == f"echo {rollout_seed(5, prefix, c.sample_index)} {prefix}"
    # The seeded fault draws hit every kind, so each retry path ran; the pool size was respected.
    assert all(fault_server.faults[f] > 0 for f in FAULTS), fault_server.faults
    assert sum(fault_server.faults.values()) >= 5
    assert fault_server.max_in_flight <= 4
    body = fault_server.bodies[0]
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"], body["stop"], body["n"]) == (
        "fake-model", 16, 0.7, 0.9, ["\n\n"], 1)  # fmt: skip
    # The key reaches the server, and nowhere else.
    assert set(fault_server.auth_headers) == {f"Bearer {SECRET}"}
    assert SECRET not in caplog.text and SECRET not in repr(client) and "(set)" in repr(client)
    assert "retrying" in caplog.text


@pytest.mark.parametrize("fault_server", [{"fault_rate": 1.0, "always": "500"}], indirect=True)
def test_exhausted_retries_are_reported_as_error_rollouts(fault_server, monkeypatch, caplog):
    monkeypatch.setenv("TL_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    seen = []
    out = OpenAISampler(_client(fault_server.url, max_retries=2)).sample(
        requests_for(["x"], 3), SamplingParams(max_new_tokens=4), on_completion=seen.append
    )
    assert len(seen) == 3 and len(out) == 3
    for c in out:
        assert c.finish_reason == "error" and c.text == "" and c.n_tokens == 0
        assert "failed 3 times (last: HTTP 500)" in c.error and "\n" not in c.error and SECRET not in c.error
    assert len(fault_server.bodies) == 9  # 3 rollouts x (1 + 2 retries)
    assert SECRET not in caplog.text


@pytest.mark.parametrize("fault_server", [{"fault_rate": 1.0, "always": "first_ok"}], indirect=True)
def test_failing_callback_stops_retry_loops_promptly(fault_server):
    def boom(completion):
        raise RuntimeError("store is gone")

    client = _client(fault_server.url, concurrency=2, backoff_base=0.5, backoff_max=0.5, max_retries=10)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="store is gone"):
        OpenAISampler(client).sample(requests_for(["x"], 6), SamplingParams(max_new_tokens=4), on_completion=boom)
    # Without cancellation a failing worker would keep retrying for ~10 x 0.5 s.
    while any(t.name.startswith("openai-sampler") for t in threading.enumerate()) and time.monotonic() - t0 < 4:
        time.sleep(0.05)
    assert time.monotonic() - t0 < 2.5
    assert len(fault_server.bodies) <= 5


@pytest.mark.parametrize("fault_server", [{"fault_rate": 1.0, "always": "400"}], indirect=True)
def test_client_errors_are_not_retried(fault_server):
    out = OpenAISampler(_client(fault_server.url)).sample(requests_for(["x"], 1), SamplingParams(max_new_tokens=4))
    assert out[0].finish_reason == "error" and "HTTP 400" in out[0].error and "bad request" in out[0].error
    assert len(fault_server.bodies) == 1


@pytest.mark.parametrize("fault_server", [{"fault_rate": 1.0, "always": "hang", "hang_s": 0.6}], indirect=True)
def test_complete_raises_backend_error_after_timeouts(fault_server):
    client = _client(fault_server.url, timeout=0.2, max_retries=1)
    with pytest.raises(BackendError, match=r"failed 2 times \(last: timed out after 0.2s\)"):
        client.complete("hi", max_tokens=1)


def test_chat_returns_message_content(fault_server):
    fault_server.always = None
    fault_server.fault_rate = 0.0

    def chat_answer(self, body, fault):
        self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": "hello"}}]}).encode())

    original = _Handler._answer
    _Handler._answer = chat_answer
    try:
        assert _client(fault_server.url).chat([{"role": "user", "content": "hi"}]) == "hello"
    finally:
        _Handler._answer = original


def test_no_key_sends_no_authorization(fault_server, monkeypatch):
    monkeypatch.delenv("TL_TEST_KEY", raising=False)
    client = _client(fault_server.url)
    client.check()
    assert fault_server.auth_headers == [None] and "(unset)" in repr(client)


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_names_the_env_var(fault_server, monkeypatch, status):
    monkeypatch.setenv("TL_TEST_KEY", SECRET)
    fault_server.models_status = status
    with pytest.raises(BackendError, match=rf"HTTP {status}\): set a valid key in \$TL_TEST_KEY") as err:
        _client(fault_server.url).complete("x")
    assert SECRET not in str(err.value)


def test_server_without_model_list_needs_an_explicit_model(fault_server):
    fault_server.models_status, fault_server.models_body = 404, {"error": "not found"}
    with pytest.raises(BackendError, match="did not list a model.*pass the model name explicitly"):
        _client(fault_server.url).complete("x")
    fault_server.fault_rate = 0.0
    assert _client(fault_server.url, model="named").complete("x", max_tokens=1, seed=0)["choices"]
    assert fault_server.bodies[-1]["model"] == "named"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_fast_backend_error(monkeypatch, caplog):
    monkeypatch.setenv("TL_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{_free_port()}/v1"
    sampler = OpenAISampler(_client(url))
    t0 = time.monotonic()
    with pytest.raises(
        BackendError, match=r"cannot reach the OpenAI-compatible server at http://127\.0\.0\.1:\d+/v1.*start it"
    ) as err:
        sampler.sample(requests_for(["x"], 2), SamplingParams())
    assert time.monotonic() - t0 < 3
    assert "\n" not in str(err.value) and SECRET not in str(err.value) and SECRET not in caplog.text


@pytest.mark.parametrize(
    "url, expected",
    [("http://h:1", "http://h:1/v1"), ("http://h:1/", "http://h:1/v1"), ("https://h/api/v1/", "https://h/api/v1")],
)
def test_base_url_normalisation(url, expected):
    assert OpenAIClient(url).base_url == expected


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(BackendError, match="must start with http"):
        OpenAIClient("localhost:8000")
    with pytest.raises(BackendError, match="concurrency >= 1"):
        OpenAIClient("http://h", concurrency=0)
    with pytest.raises(ConfigError, match="max_new_tokens must be >= 1"):  # refused when the params are built
        OpenAISampler(OpenAIClient("http://h")).sample(requests_for(["x"], 1), SamplingParams(max_new_tokens=0))


def test_backoff_grows_exponentially_with_bounded_jitter():
    client = OpenAIClient("http://h", backoff_base=0.1, backoff_max=1.0)
    for attempt, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        delays = [client._backoff(attempt, None) for _ in range(50)]
        assert all(cap / 2 <= d <= cap for d in delays)
    assert client._backoff(0, 0.7) == 0.7 and client._backoff(0, 99) == 1.0  # Retry-After honoured, capped
