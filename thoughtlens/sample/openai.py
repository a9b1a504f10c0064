"""The openai backend: any OpenAI-compatible completions server (vLLM, SGLang, llama.cpp, hosted APIs).

Each rollout is one `POST {base_url}/completions` with `n=1` (llama.cpp ignores n>1) and its own seed,
so a resumed run asks for exactly the missing samples and gets the same ones. Requests run in a thread
pool of `concurrency` workers. Transient failures (HTTP 429 and 5xx, timeouts, connection errors,
malformed JSON) are retried with exponential backoff and jitter, a bounded number of times; a rollout
that still fails is *reported* with finish_reason="error" (never dropped), so the caller stores and counts it.

The API key is read from the environment variable named by `api_key_env` and lives only in the HTTP
client's headers: it is never logged, put in a repr, an exception or a store.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any, Callable, Sequence
from urllib.parse import unquote, urlsplit

import httpx

from thoughtlens.errors import BackendError
from thoughtlens.sample.base import Completion, OnCompletion, SampleRequest, SamplingParams, rollout_seed
from thoughtlens.sample.provenance import Provenance
from thoughtlens.sample.provenance import redact_url as redact_url

log = logging.getLogger(__name__)

# Statuses worth retrying: rate limits, timeouts at a proxy, and server-side failures.
_RETRY_STATUS = {408, 409, 429} | set(range(500, 600))
_HEALTH_TIMEOUT_S = 5.0


class ServerUnavailable(BackendError):
    """The server could not be reached, or kept failing until the retries ran out: another server of a
    fleet may still answer the same request (a refusal, HTTP 4xx, is a plain BackendError: it would not)."""


class _Transient(Exception):
    """A failure that a later attempt may not hit (the message says which)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class OpenAIClient:
    """A small client for an OpenAI-compatible server at `base_url` (with or without the trailing /v1).

    model: the model name to request; None takes the first one the server lists at /v1/models.
    timeout: seconds per request (connect and read); max_retries: extra attempts after the first.
    The server is checked (`check()`, GET /v1/models) before the first request; an unreachable
    server raises BackendError at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60,
        max_retries: int = 5,
        concurrency: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
    ):
        if max_retries < 0 or concurrency < 1 or timeout <= 0:
            raise BackendError(
                "OpenAIClient needs max_retries >= 0, concurrency >= 1 and timeout > 0: fix the arguments"
            )
        self.base_url, auth = _normalise_base_url(base_url)  # base_url: credential-free, safe to show
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        key = os.environ.get(api_key_env) if api_key_env else None
        self._has_key = bool(key)
        # The key goes only into the client's default headers (httpx never logs header values).
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.Client(base_url=self.base_url, headers=headers, auth=auth, timeout=timeout, limits=limits)
        self.served_models: list[str] = []  # what GET /models listed (filled by check())
        self._checked = False
        self._check_lock = threading.Lock()
        self._rng = random.Random()  # jitter only; never affects what is sampled

    def __repr__(self) -> str:
        key = "set" if self._has_key else "unset"
        return (
            f"OpenAIClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r} ({key}))"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "OpenAIClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests --------------------------------------------------------------------------------

    def check(self) -> None:
        """GET /models once (short timeout): fail fast on an unreachable server or a rejected key,
        and pick the served model when none was given."""
        with self._check_lock:
            if self._checked:
                return
            try:
                resp = self._http.get("/models", timeout=min(self.timeout, _HEALTH_TIMEOUT_S))
            except httpx.TransportError as exc:
                raise ServerUnavailable(
                    f"cannot reach the OpenAI-compatible server at {self.base_url} ({type(exc).__name__}): "
                    "start it (e.g. python -m llama_cpp.server --model M.gguf) or fix the base URL"
                ) from None
            if resp.status_code in (401, 403):
                raise BackendError(
                    f"server at {self.base_url} rejected the request (HTTP {resp.status_code}): "
                    f"set a valid key in ${self.api_key_env}"
                )
            if self.model is None:
                self.served_models = _served_models(resp, self.base_url)
                self.model = self.served_models[0]
                self._checked = True
                return
            try:  # a named model must be one the server serves (where it says what it serves)
                self.served_models = _served_models(resp, self.base_url)
            except BackendError:
                self.served_models = []
            if self.served_models and self.model not in self.served_models:
                raise BackendError(
                    f"server at {self.base_url} does not serve model '{self.model}' (it serves: "
                    f"{', '.join(self.served_models[:10])}): pass one of those with --api-model, or drop it"
                )
            self._checked = True

    def complete(self, prompt: str, **params: Any) -> dict:
        """POST /completions and return the parsed JSON (which has a non-empty `choices` list).
        Retries transient failures; raises BackendError when attempts run out or on a non-retryable error."""
        return self._complete(prompt, params, cancel=None)

    def _complete(self, prompt: str, params: dict, cancel: threading.Event | None) -> dict:
        """complete(), stopping between attempts once `cancel` is set (the sampler was interrupted)."""
        self.check()
        return self._post("/completions", {"model": self.model, "prompt": prompt, **params}, _has_choices, cancel)

    def chat(self, messages: list[dict], **params: Any) -> str:
        """POST /chat/completions and return choices[0].message.content."""
        self.check()
        data = self._post("/chat/completions", {"model": self.model, "messages": messages, **params}, _has_message)
        return data["choices"][0]["message"]["content"]

    def _post(self, path: str, body: dict, valid: Callable[[Any], bool], cancel: threading.Event | None = None) -> dict:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            if cancel is not None and cancel.is_set():
                raise BackendError(f"POST {self.base_url}{path} cancelled: the run was interrupted; resume it to retry")
            try:
                return self._post_once(path, body, valid)
            except _Transient as exc:
                if attempt == attempts - 1:
                    log.warning("POST %s%s gave up after %d attempts: %s", self.base_url, path, attempts, exc)
                    raise ServerUnavailable(
                        f"POST {self.base_url}{path} failed {attempts} times (last: {exc}): "
                        "check the server or raise max_retries"
                    ) from None
                delay = self._backoff(attempt, exc.retry_after)
                log.info(
                    "POST %s%s attempt %d/%d: %s; retrying in %.2fs",
                    self.base_url,
                    path,
                    attempt + 1,
                    attempts,
                    exc,
                    delay,
                )
                if cancel is not None:
                    cancel.wait(delay)  # returns early when the run is interrupted
                else:
                    time.sleep(delay)
        raise AssertionError("unreachable")

    def _post_once(self, path: str, body: dict, valid: Callable[[Any], bool]) -> dict:
        try:
            resp = self._http.post(path, json=body)
        except httpx.TimeoutException:
            raise _Transient(f"timed out after {self.timeout}s") from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection error ({type(exc).__name__})") from None
        if resp.status_code in _RETRY_STATUS:
            raise _Transient(f"HTTP {resp.status_code}", _retry_after(resp))
        if resp.status_code >= 400:
            raise BackendError(
                f"POST {self.base_url}{path} was refused (HTTP {resp.status_code}: {_snippet(resp.text)}): "
                "fix the request parameters or model name"
            )
        try:
            data = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Transient(f"malformed JSON ({_snippet(resp.text)})") from None
        if not valid(data):
            raise _Transient(f"unexpected JSON shape ({_snippet(resp.text)})")
        return data

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter: base * 2**attempt, capped, times a random factor in [0.5, 1]
        so that concurrent workers that failed together do not retry together. A server's Retry-After wins."""
        if retry_after is not None:
            return min(self.backoff_max, retry_after)
        return min(self.backoff_max, self.backoff_base * 2**attempt) * self._rng.uniform(0.5, 1.0)


class OpenAISampler:
    """Sampler over an OpenAIClient: one /completions request per (prefix, sample_index).

    tokenizer: the served model's tokenizer (`thoughtlens.model.load.load_tokenizer`), used by the anchors
    runner for sentence token ranges; optional, never used to sample.
    """

    name = "openai"

    def __init__(self, client: OpenAIClient, tokenizer: Any = None):
        self.client = client
        self.tokenizer = tokenizer

    def __repr__(self) -> str:
        return f"OpenAISampler({self.client!r})"

    def provenance(self) -> Provenance:
        """Backend, served model id (asked of the server), credential-free base URL, tokenizer identity."""
        from thoughtlens.model.load import tokenizer_identity  # lazy: it imports torch

        self.client.check()
        return Provenance("openai", self.client.model or "", self.client.base_url, tokenizer_identity(self.tokenizer))

    def sample(
        self,
        requests: Sequence[SampleRequest],
        params: SamplingParams,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]:
        """Continue every (prefix, sample_index); `on_completion` is called (in this thread) as each
        finishes, errors included. Returns the completions in request order."""
        check_params(params)
        self.client.check()  # unreachable server: one clear error before any work
        jobs = [(p, s, r.prefix) for p, r in enumerate(requests) for s in r.sample_indices]
        done: dict[tuple[int, int], Completion] = {}
        pool = ThreadPoolExecutor(max_workers=self.client.concurrency, thread_name_prefix="openai-sampler")
        cancel = threading.Event()
        futures: list[Future[Completion]] = [
            pool.submit(self._one, p, s, prefix, params, cancel) for p, s, prefix in jobs
        ]
        try:
            for fut in as_completed(futures):
                c = fut.result()
                done[(c.prefix_index, c.sample_index)] = c
                if on_completion is not None:
                    on_completion(c)
        finally:
            # On Ctrl-C or a failing callback: drop queued requests and stop retry loops, so that only
            # requests already on the wire (at most `timeout` seconds) delay the exit.
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
        return [done[(p, s)] for p, s, _ in jobs]

    def _one(
        self, prefix_index: int, sample_index: int, prefix: str, params: SamplingParams, cancel: threading.Event
    ) -> Completion:
        try:
            data = self.client._complete(prefix, request_body(params, prefix, sample_index), cancel)
        except BackendError as exc:
            return Completion(prefix_index, sample_index, "", 0, "error", error=str(exc))
        return to_completion(prefix_index, sample_index, data)


def check_params(params: SamplingParams) -> None:
    if params.max_new_tokens < 1:
        raise BackendError(f"max_new_tokens must be >= 1, got {params.max_new_tokens}: raise --max-new-tokens")


def request_body(params: SamplingParams, prefix: str, sample_index: int) -> dict[str, Any]:
    """The /completions parameters of one rollout: n=1 with the rollout's own seed."""
    body: dict[str, Any] = {
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": rollout_seed(params.seed, prefix, sample_index),
        "n": 1,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    return body


def to_completion(prefix_index: int, sample_index: int, data: dict) -> Completion:
    """A /completions response (one choice) as a Completion."""
    choice = data["choices"][0]
    n_tokens = (data.get("usage") or {}).get("completion_tokens")
    return Completion(
        prefix_index,
        sample_index,
        choice.get("text") or "",
        int(n_tokens) if n_tokens is not None else 0,  # 0 = the server did not say
        "length" if choice.get("finish_reason") == "length" else "stop",
    )


# ---- private helpers -----------------------------------------------------------------------------


def _normalise_base_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """'http://h:8000', 'http://h:8000/' and 'http://h:8000/v1' all mean 'http://h:8000/v1'.

    Returns (URL without credentials, (user, password) or None): credentials in the URL become HTTP basic
    auth and never appear in the URL that is shown, logged or stored."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        raise BackendError(
            f"base URL must start with http:// or https://, got {shown!r}: pass e.g. http://127.0.0.1:8000/v1"
        )
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise BackendError(
            f"base URL {redact_url(url)} carries a query string or fragment: drop it, and pass an API key in the "
            "environment variable named by --api-key-env instead"
        )
    auth = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username or parts.password else None
    clean = redact_url(url).rstrip("/")
    return (clean if clean.endswith("/v1") else clean + "/v1"), auth


def _served_models(resp: httpx.Response, base_url: str) -> list[str]:
    """The model ids listed by GET /models (at least one)."""
    try:
        ids = [str(m["id"]) for m in resp.json()["data"]]
        if not ids:
            raise ValueError("no models")
        return ids
    except (ValueError, KeyError, TypeError):
        raise BackendError(
            f"server at {base_url} did not list a model at /models (HTTP {resp.status_code}): "
            "pass the model name explicitly"
        ) from None


def _has_choices(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("choices"), list)
        and len(data["choices"]) > 0
        and isinstance(data["choices"][0], dict)
    )


def _has_message(data: Any) -> bool:
    return _has_choices(data) and isinstance(data["choices"][0].get("message"), dict)


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers["retry-after"]))
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: fall back to our own backoff


def _snippet(text: str, limit: int = 120) -> str:
    """A one-line, bounded excerpt of a response body for error messages."""
    one_line = " ".join(text.split())
    return one_line[:limit] + ("..." if len(one_line) > limit else "")
