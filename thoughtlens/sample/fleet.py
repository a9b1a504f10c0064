"""A fleet: one sampler over several OpenAI-compatible servers (vLLM / SGLang / llama.cpp) of one model.

This is how many GPUs or nodes scale rollouts without thoughtlens growing a scheduler of its own: start
an engine per GPU (or one with data parallelism) and give every base URL. Each server gets
`client.concurrency` worker threads, all pulling from one queue of rollouts, so a fast server simply
takes more of them. A request that a server fails (unreachable, or still failing after the client's own
retries) goes back to the queue for another server; a server that fails `dead_after` requests in a row
is declared dead, named in a warning and in `summary()`, and gets no more work. The run completes while
at least one server lives; only when all are dead do the remaining rollouts come back as errors.

Every rollout carries its own seed (`rollout_seed`), so which server answered does not change what was
sampled (servers of the same model and dtype; see docs on seeded engines).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from thoughtlens.errors import BackendError
from thoughtlens.sample.base import Completion, OnCompletion, SampleRequest, SamplingParams
from thoughtlens.sample.openai import OpenAIClient, ServerUnavailable, check_params, request_body, to_completion
from thoughtlens.sample.provenance import Provenance

log = logging.getLogger(__name__)


@dataclass
class ServerState:
    """What one server of the fleet did in this sampler's lifetime."""

    base_url: str  # credential-free
    completed: int = 0
    failed: int = 0  # requests it failed (each retried elsewhere while a server lived)
    consecutive_failures: int = 0
    dead: bool = False
    reason: str = ""  # why it was declared dead


@dataclass
class _Job:
    prefix_index: int
    sample_index: int
    prefix: str
    tries: int = 0


def read_url_file(path: str | Path) -> list[str]:
    """Base URLs from a file: one per line; blank lines and `#` comments are skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise BackendError(
            f"cannot read the URL file {path} ({exc.strerror}): pass a file with one base URL per line"
        ) from None
    urls = [line.split("#", 1)[0].strip() for line in lines]
    urls = [u for u in urls if u]
    if not urls:
        raise BackendError(f"URL file {path} holds no base URL: write one per line, e.g. http://10.0.0.2:8000/v1")
    return urls


class FleetSampler:
    """Sampler over several OpenAIClients serving the same model.

    dead_after: consecutive failed requests after which a server is dropped (each failure is already the
        client's `max_retries` exhausted, so keep the clients' retries small: 1-2).
    max_tries: how many servers one rollout may be tried on before it is reported as an error
        (default: the number of servers).
    """

    name = "openai"

    def __init__(
        self,
        clients: Sequence[OpenAIClient],
        tokenizer: Any = None,
        *,
        dead_after: int = 2,
        max_tries: int | None = None,
    ):
        if not clients:
            raise BackendError("a fleet needs at least one server: pass --base-url once per server")
        urls = [c.base_url for c in clients]
        dup = sorted({u for u in urls if urls.count(u) > 1})
        if dup:
            raise BackendError(
                f"base URL {dup[0]} is given twice: pass each server once (raise its concurrency instead)"
            )
        if dead_after < 1:
            raise BackendError(f"dead_after must be >= 1, got {dead_after}: pass a positive number of failures")
        self.clients = list(clients)
        self.tokenizer = tokenizer
        self.dead_after = dead_after
        self.max_tries = max_tries or len(self.clients)
        self.servers = [ServerState(c.base_url) for c in self.clients]
        self.retried = 0  # rollouts sent to another server after a failure
        self.model: str | None = None
        self._lock = threading.Lock()
        self._checked = False

    def __repr__(self) -> str:
        return f"FleetSampler({', '.join(s.base_url for s in self.servers)})"

    @property
    def concurrency(self) -> int:
        return sum(c.concurrency for c in self.clients)

    # ---- set-up ------------------------------------------------------------------------------------

    def check(self) -> None:
        """Ask every server what it serves: unreachable ones start dead; the live ones must serve one model."""
        if self._checked:
            return
        models: dict[str, str] = {}
        for client, state in zip(self.clients, self.servers):
            try:
                client.check()
            except ServerUnavailable as exc:
                self._kill(state, str(exc))
                continue
            models[state.base_url] = client.model or ""
        if not models:
            raise BackendError(f"no server of the fleet answers ({self.summary()}): start them or fix the base URLs")
        first_url, first_model = next(iter(models.items()))
        for url, model in models.items():
            if model != first_model:
                raise BackendError(
                    f"the fleet mixes models: {first_url} serves '{first_model}' but {url} serves '{model}': "
                    "give servers of one model (or name it with --api-model)"
                )
        self.model = first_model
        self._checked = True

    def provenance(self) -> Provenance:
        """The served model, every base URL (sorted, credential-free) and the tokenizer's identity."""
        from thoughtlens.model.load import tokenizer_identity  # lazy: it imports torch

        self.check()
        urls = ",".join(sorted(s.base_url for s in self.servers))
        return Provenance("openai", self.model or "", urls, tokenizer_identity(self.tokenizer))

    # ---- sampling ----------------------------------------------------------------------------------

    def sample(
        self,
        requests: Sequence[SampleRequest],
        params: SamplingParams,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]:
        """Continue every (prefix, sample_index) on whichever live server is free; `on_completion` is called
        in this thread exactly once per rollout. Returns the completions in request order."""
        check_params(params)
        self.check()
        jobs = [_Job(p, s, r.prefix) for p, r in enumerate(requests) for s in r.sample_indices]
        todo: queue.Queue[_Job] = queue.Queue()
        for job in jobs:
            todo.put(job)
        results: queue.Queue[Completion] = queue.Queue()
        stop = threading.Event()
        workers = [
            threading.Thread(
                target=self._work, args=(client, state, todo, results, params, stop), daemon=True, name=f"fleet-{i}-{w}"
            )
            for i, (client, state) in enumerate(zip(self.clients, self.servers))
            if not state.dead
            for w in range(client.concurrency)
        ]
        for t in workers:
            t.start()
        done: dict[tuple[int, int], Completion] = {}
        try:
            while len(done) < len(jobs):
                try:
                    c = results.get(timeout=0.1)
                except queue.Empty:
                    if self._all_dead():
                        self._drain(todo, results)  # nobody is left to take them
                    continue
                done[(c.prefix_index, c.sample_index)] = c
                if on_completion is not None:
                    on_completion(c)
        finally:
            stop.set()  # workers leave after their request in flight; retry loops stop waiting
        return [done[(j.prefix_index, j.sample_index)] for j in jobs]

    def _work(
        self,
        client: OpenAIClient,
        state: ServerState,
        todo: "queue.Queue[_Job]",
        results: "queue.Queue[Completion]",
        params: SamplingParams,
        stop: threading.Event,
    ) -> None:
        while not stop.is_set() and not state.dead:
            try:
                job = todo.get(timeout=0.1)
            except queue.Empty:
                continue
            body = request_body(params, job.prefix, job.sample_index)
            try:
                data = client._complete(job.prefix, body, stop)
            except ServerUnavailable as exc:
                self._failed(state, job, str(exc), todo, results)
                continue
            except BackendError as exc:  # refused (HTTP 4xx) or cancelled: another server would not do better
                results.put(Completion(job.prefix_index, job.sample_index, "", 0, "error", error=str(exc)))
                continue
            with self._lock:
                state.completed += 1
                state.consecutive_failures = 0
            results.put(to_completion(job.prefix_index, job.sample_index, data))

    def _failed(
        self, state: ServerState, job: _Job, error: str, todo: "queue.Queue[_Job]", results: "queue.Queue[Completion]"
    ) -> None:
        """Count the failure, maybe declare the server dead, and hand the rollout to another server."""
        with self._lock:
            state.failed += 1
            state.consecutive_failures += 1
            if state.consecutive_failures >= self.dead_after:
                self._kill(state, error)
            job.tries += 1
            if job.tries < self.max_tries and not self._all_dead():
                self.retried += 1
                todo.put(job)
                return
        results.put(
            Completion(
                job.prefix_index,
                job.sample_index,
                "",
                0,
                "error",
                error=f"{error} (tried on {job.tries} server(s) of the fleet)",
            )
        )

    def _kill(self, state: ServerState, reason: str) -> None:
        if not state.dead:
            state.dead, state.reason = True, reason
            log.warning("fleet: server %s is dead (%s); its requests go to the other servers", state.base_url, reason)

    def _all_dead(self) -> bool:
        return all(s.dead for s in self.servers)

    @staticmethod
    def _drain(todo: "queue.Queue[_Job]", results: "queue.Queue[Completion]") -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            results.put(
                Completion(
                    job.prefix_index,
                    job.sample_index,
                    "",
                    0,
                    "error",
                    error="every server of the fleet is dead: restart them and resume the run",
                )
            )

    # ---- reporting ---------------------------------------------------------------------------------

    def summary(self) -> str:
        """One line per server: rollouts completed, failures, and for a dead server why."""
        lines = []
        for s in self.servers:
            state = f"DEAD ({s.reason})" if s.dead else "alive"
            lines.append(f"{s.base_url}: {s.completed} rollouts, {s.failed} failed requests, {state}")
        if self.retried:
            lines.append(f"{self.retried} request(s) retried on another server")
        return "\n".join(lines)
