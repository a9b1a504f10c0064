"""A loopback OpenAI-compatible server for sampler tests: lists one model id, answers /v1/completions with a
text derived from (seed, prompt) so every answer can be traced to its own request, and records what it saw
(auth headers, bodies). `stop()` kills it mid-run: later connections are refused, as with a dead engine."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model: str = "model-a", delay_s: float = 0.0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.model, self.delay_s = model, delay_s
        self.lock = threading.Lock()
        self.auth_headers: list[str | None] = []
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.answered = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def text_for(seed: int, prompt: str) -> str:
    """What the fake server answers: the test recomputes it to check each rollout's origin."""
    return f" step {seed % 97}. So the answer is \\boxed{{{seed % 5}}}."


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAIServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.auth_headers.append(self.headers.get("Authorization"))
            self.server.paths.append(self.path)
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.server.model, "object": "model"}]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        import time

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.auth_headers.append(self.headers.get("Authorization"))
            self.server.bodies.append(body)
            self.server.paths.append(self.path)
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        text = text_for(body.get("seed", 0), body["prompt"])
        with self.server.lock:
            self.server.answered += 1
        self._send(
            200,
            {
                "choices": [{"text": text, "finish_reason": "stop", "index": 0}],
                "usage": {"completion_tokens": len(text.split())},
                "model": self.server.model,
            },
        )
