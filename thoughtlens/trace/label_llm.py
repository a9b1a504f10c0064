"""The LLM labeller: one chat call per trace to any OpenAI-compatible endpoint, JSON out, validated.

The reply must be a JSON object mapping every sentence index to a list of tags from the taxonomy,
e.g. {"0": ["problem_setup"], "1": ["plan_generation"]}. A reply that is not valid JSON, misses an
index or uses an unknown tag is retried (with the validation error fed back to the model) up to
`max_attempts` times; then `LabelingError` is raised, or every sentence gets `unknown` when
`on_failure="unknown"`. Network retries (429, 5xx, timeouts) are the client's job.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Literal, Protocol, Sequence

from thoughtlens.errors import ThoughtlensError
from thoughtlens.trace.categories import ALL_TAGS, TAXONOMY, UNKNOWN

log = logging.getLogger(__name__)


class LabelingError(ThoughtlensError):
    """The LLM gave no valid labelling within the allowed attempts."""


class ChatClient(Protocol):
    """What the labeller needs from a client: thoughtlens.sample.openai.OpenAIClient fits."""

    def chat(self, messages: list[dict], **params) -> str: ...


def _taxonomy_text() -> str:
    lines = [f'- "{c.name}": {c.definition} Example: "{c.examples[0]}"' for c in TAXONOMY]
    lines.append(f'- "{UNKNOWN}": none of the above (e.g. a fragment of a formula).')
    return "\n".join(lines)


SYSTEM_PROMPT = (
    "You annotate the chain of thought of a model solving a maths problem. Each numbered sentence "
    "does a job in the reasoning. Give every sentence one or more tags from this list, the main job first:\n"
    + _taxonomy_text()
    + "\n\nJudge each sentence by its role in context (what came before and after), not by its words alone. "
    "Answer with one JSON object only, no prose: keys are the sentence numbers as strings, values are lists of tags, "
    'e.g. {"0": ["problem_setup"], "1": ["plan_generation"], "2": ["active_computation", "result_consolidation"]}.'
)


def build_messages(sentences: Sequence[str], problem: str | None = None) -> list[dict]:
    """Chat messages asking for the tags of `sentences` (optionally with the problem text for context)."""
    numbered = "\n".join(f"[{i}] {s.strip()}" for i, s in enumerate(sentences))
    head = f"Problem:\n{problem.strip()}\n\n" if problem else ""
    user = (
        f"{head}Sentences of the chain of thought:\n{numbered}\n\n"
        f"Return the JSON object for all {len(sentences)} sentences."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def parse_labels(reply: str, n_sentences: int) -> list[list[str]]:
    """Validate an LLM reply; one tag list per sentence, or LabelingError saying what is wrong (fed back to the
    model)."""
    text = _FENCE.sub("", reply.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise LabelingError("reply holds no JSON object; answer with one JSON object only")
    try:
        obj = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise LabelingError(
            f"reply is not valid JSON ({exc.msg} at char {exc.pos}); answer with one JSON object only"
        ) from None
    if not isinstance(obj, dict):
        raise LabelingError("reply JSON is not an object; map sentence numbers to lists of tags")
    out: list[list[str]] = []
    for i in range(n_sentences):
        tags = obj.get(str(i), obj.get(i))
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, list) or not tags:
            raise LabelingError(
                f'sentence {i} has no tag list; give "{i}": [tags] for every sentence 0..{n_sentences - 1}'
            )
        bad = [t for t in tags if t not in ALL_TAGS]
        if bad:
            raise LabelingError(f"sentence {i} has unknown tag {bad[0]!r}; use only: {', '.join(ALL_TAGS)}")
        out.append([str(t) for t in tags])
    return out


class LLMLabeler:
    """Labels a trace with one chat call (plus retries on invalid replies).

    client: anything with `chat(messages, **params) -> str` (e.g. OpenAIClient).
    json_mode: ask the server for a JSON object (`response_format`); llama.cpp, vLLM and OpenAI honour it.
    """

    name = "llm"

    def __init__(
        self,
        client: ChatClient,
        *,
        max_attempts: int = 3,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        json_mode: bool = True,
        on_failure: Literal["raise", "unknown"] = "raise",
        problem: str | None = None,
    ):
        if max_attempts < 1:
            raise ThoughtlensError(f"max_attempts={max_attempts}; use max_attempts >= 1")
        self.client, self.max_attempts, self.temperature = client, max_attempts, temperature
        self.max_tokens, self.json_mode, self.on_failure, self.problem = max_tokens, json_mode, on_failure, problem
        self.attempts_used = 0  # of the last call: how many chat requests it took

    def _params(self, n: int) -> dict:
        params: dict = {"temperature": self.temperature, "max_tokens": self.max_tokens or 16 + 12 * n}
        if self.json_mode:
            params["response_format"] = {"type": "json_object"}
        return params

    def label_sentences(self, sentences: Sequence[str]) -> list[list[str]]:
        """Sentences of ONE trace, in order: one tag list per sentence."""
        if not sentences:
            return []
        messages = build_messages(sentences, self.problem)
        error: LabelingError | None = None
        for attempt in range(1, self.max_attempts + 1):
            self.attempts_used = attempt
            reply = self.client.chat(messages, **self._params(len(sentences)))
            try:
                return parse_labels(reply, len(sentences))
            except LabelingError as exc:
                error = exc
                log.info("LLM labelling attempt %d/%d invalid: %s", attempt, self.max_attempts, exc)
                # Feed the problem back so the next attempt can fix it rather than repeat it.
                messages = messages[:2] + [
                    {"role": "assistant", "content": reply[:2000]},
                    {
                        "role": "user",
                        "content": f"That reply was invalid: {exc}. Reply again with the corrected JSON object only.",
                    },
                ]
        if self.on_failure == "unknown":
            log.warning(
                "LLM labelling gave up after %d attempts (%s); tagging all sentences unknown", self.max_attempts, error
            )
            return [[UNKNOWN] for _ in sentences]
        raise LabelingError(
            f"no valid labelling after {self.max_attempts} attempts (last: {error}); "
            "use a stronger model, raise max_attempts, or pass on_failure='unknown'"
        )
