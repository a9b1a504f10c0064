"""The sampler protocol: prefixes in, completions out, one backend per file.

Every backend (hf, openai, vllm) implements `Sampler.sample`. The anchors runner
asks for explicit `(prefix, sample_index)` pairs so that an interrupted run can
ask again for exactly the missing ones; each pair gets its own seed
(`rollout_seed`) so a resumed run draws the same samples as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Protocol, Sequence

from thoughtlens.checks import check_float, check_int
from thoughtlens.errors import ConfigError

FinishReason = Literal["stop", "length", "answer", "error"]


@dataclass(frozen=True)
class Sampling:
    """The sampling settings every job shares, declared and range-checked here only.

    Job configs (`AnchorsConfig`, `ResilienceConfig`, `InterventionConfig`, `TransplantConfig`, `BenchConfig`)
    inherit these four fields, changing a default where their paper's code does, and turn them into the
    `SamplingParams` of a request with `params(...)`. Inheritance rather than a nested field keeps the fields
    flat, so a stored config (and the run id hashed from it) reads the same as before the fields were shared.
    """

    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        # One-line ConfigError when the settings are built, not a backend error after a model load.
        check_float("temperature", self.temperature, min=0, example=0.6)
        check_float("top_p", self.top_p, min=0, max=1, min_open=True, example=0.95)
        check_int("max_new_tokens", self.max_new_tokens, min=1, example=256)
        check_int("seed", self.seed, example=0)

    def params(
        self,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
        stop: tuple[str, ...] = (),
    ) -> "SamplingParams":
        """These settings as the SamplingParams of one request; a job overrides what differs for one kind of
        request (e.g. the forced-answer budget, or a greedy base trace)."""
        return SamplingParams(
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p if top_p is None else top_p,
            max_new_tokens=self.max_new_tokens if max_new_tokens is None else max_new_tokens,
            seed=self.seed,
            stop=tuple(stop),
        )


@dataclass(frozen=True)
class SamplingParams(Sampling):
    """How to continue a prefix: the shared settings plus `stop` strings, which end a completion (and are kept
    out of its text)."""

    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.stop, (tuple, list)) or not all(isinstance(x, str) and x for x in self.stop):
            raise ConfigError(
                f"stop must be a tuple of non-empty strings, got {self.stop!r}: pass e.g. stop=('\\n\\n',)"
            )


@dataclass
class Completion:
    """One continuation of one prefix.

    prefix_index: position of the prefix in the request; sample_index: which of its N samples.
    finish_reason: "stop" (EOS or stop string), "length" (hit max_new_tokens),
    "answer" (stopped early because the answer was complete), "error" (backend gave up; `error` says why).
    """

    prefix_index: int
    sample_index: int
    text: str
    n_tokens: int
    finish_reason: FinishReason
    error: str | None = None


@dataclass(frozen=True)
class SampleRequest:
    """Continue `prefix` once for each index in `sample_indices`."""

    prefix: str
    sample_indices: tuple[int, ...]


OnCompletion = Callable[[Completion], None]


class Sampler(Protocol):
    """A source of continuations. Implementations call `on_completion` as soon as each one is done
    (so the caller can commit it) and also return them all."""

    name: str

    def sample(
        self,
        requests: Sequence[SampleRequest],
        params: SamplingParams,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]: ...


def rollout_seed(base_seed: int, prefix: str, sample_index: int) -> int:
    """A 63-bit seed that depends only on (base seed, prefix text, sample index), never on batching."""
    h = hashlib.blake2b(f"{base_seed}\x00{sample_index}\x00{prefix}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def requests_for(prefixes: Iterable[str], n: int) -> list[SampleRequest]:
    """N samples of each prefix, indices 0..n-1."""
    return [SampleRequest(p, tuple(range(n))) for p in prefixes]
