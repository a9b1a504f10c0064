"""Where rollouts come from: backend, served model, server address and tokenizer, recorded with every run.

The anchors run id hashes its config, and the config carries these four fields, so pointing the same
store at another served model starts a new run instead of silently mixing two models' rollouts. When a
run id is forced (`--run-id`), `check_same_source` refuses to resume it from another model or tokenizer
with one line that names both.

Addresses are stored without credentials: `redact_url` drops `user:password@` and the query string
(where hosted APIs sometimes take a key), so a key can reach neither the store nor a log line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from thoughtlens.errors import StoreError

# The config keys that identify the source of rollouts (a subset of the anchors config).
SOURCE_KEYS = ("backend", "model", "tokenizer", "base_url")


@dataclass(frozen=True)
class Provenance:
    """backend: hf / openai / vllm; model: the served model id (remote) or the loaded model's name;
    base_url: the server(s), credential-free, comma-separated for a fleet ("" in process);
    tokenizer: `thoughtlens.model.load.tokenizer_identity` of the tokenizer used for prompts and token ranges."""

    backend: str
    model: str
    base_url: str = ""
    tokenizer: str = ""

    def as_config(self) -> dict[str, str]:
        return asdict(self)


def redact_url(url: str) -> str:
    """The URL without `user:password@` and without a query string or fragment: safe to store and log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_same_source(run_id: str, stored: dict, new: dict) -> None:
    """Refuse to resume `run_id` (stored config `stored`) from a different model or tokenizer than `new`.

    Only keys present in both configs are compared, so runs stored before these keys existed still resume.
    """
    for key, what in (("model", "model"), ("tokenizer", "tokenizer"), ("backend", "backend")):
        old_v, new_v = stored.get(key), new.get(key)
        if old_v is not None and new_v is not None and old_v != new_v:
            raise StoreError(
                f"run '{run_id}' was sampled from {what} '{old_v}' but this run uses {what} '{new_v}': "
                "resuming would mix the two; drop --run-id (a new run id follows) or point at the original server"
            )


def with_provenance(config: Any, sampler: Any) -> Any:
    """`config` (a dataclass with backend/model/base_url/tokenizer fields) with the sampler's provenance
    filled in, for samplers that report one (openai, fleet, vllm): the model recorded is then the served
    model's, never a local default. Other samplers (hf) leave the config as the caller built it."""
    if not hasattr(sampler, "provenance"):
        return config
    return replace(config, **sampler.provenance().as_config())
