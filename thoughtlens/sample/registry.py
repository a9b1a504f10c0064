"""Build a sampler by backend name: `make_sampler("hf" | "openai" | "vllm", ...)`.

    hf      a HookedModel in this process (`thoughtlens.load(..., device="cuda", dtype="bf16")`).
    openai  one or more OpenAI-compatible servers (vLLM, SGLang, llama.cpp, hosted APIs); only a tokenizer
            is loaded here (`load_tokenizer`), for prompts and sentence token ranges. Several base URLs
            make a fleet (`thoughtlens.sample.fleet`).
    vllm    vLLM's engine in this process (GPU machines: `pip install 'thoughtlens[vllm]'`).

Every sampler returned has `.name`, `.tokenizer` and `.provenance()` (backend, model, base URL, tokenizer
identity), which the anchors runner stores with the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thoughtlens.errors import BackendError
from thoughtlens.sample.base import Sampler
from thoughtlens.sample.provenance import Provenance

BACKENDS = ("hf", "openai", "vllm")
# Backends added by users or tests: name -> factory(**the same keyword options as make_sampler) -> Sampler.
_REGISTERED: dict[str, Any] = {}


def register_sampler(name: str, factory: Any) -> None:
    """Make `make_sampler(name, ...)` (and `--backend name`) build a sampler with `factory(**options)`."""
    _REGISTERED[name] = factory


def backend_names() -> list[str]:
    """Every backend `make_sampler` accepts: the built-in ones, then the registered ones."""
    return [*BACKENDS, *(n for n in _REGISTERED if n not in BACKENDS)]


def make_sampler(
    backend: str,
    *,
    model: Any = None,
    tokenizer: Any = None,
    base_url: str | Sequence[str] | None = None,
    api_model: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    timeout: float = 600,
    max_retries: int | None = None,
    batch_size: int = 16,
    answer_done: Any = None,
    tensor_parallel_size: int = 1,
    dtype: str | None = None,
    **engine_kwargs: Any,
) -> Sampler:
    """A sampler for `backend`.

    hf: `model` is a loaded HookedModel (load it with device/dtype first); batch_size, answer_done apply.
    openai: `base_url` is one URL or several (a fleet, `concurrency` requests in flight per server);
        `api_model` names the served model (default: the first the server lists); `tokenizer` is the served
        model's tokenizer (`load_tokenizer(...).tokenizer`; else `model.tokenizer` when `model` is a
        HookedModel or TokenizerOnly), used only for sentence token ranges.
    vllm: `model` is a hub id or local directory (or an object with `.name`; `api_model` wins);
        tensor_parallel_size, dtype and engine_kwargs go to vllm.LLM.
    """
    if tokenizer is None and model is not None and not isinstance(model, str):
        tokenizer = getattr(model, "tokenizer", None)
    if backend in _REGISTERED:
        return _REGISTERED[backend](
            model=model,
            tokenizer=tokenizer,
            base_url=base_url,
            api_model=api_model,
            api_key_env=api_key_env,
            batch_size=batch_size,
            answer_done=answer_done,
            **engine_kwargs,
        )
    if backend == "hf":
        from thoughtlens.sample.hf import HFSampler

        if model is None or isinstance(model, str):
            raise BackendError(
                "the hf backend needs a loaded model: pass model=thoughtlens.load(name, device=..., dtype=...)"
            )
        sampler = HFSampler(model, batch_size=batch_size, answer_done=answer_done)
        return sampler
    if backend == "openai":
        from thoughtlens.sample.openai import OpenAIClient, OpenAISampler

        urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
        if not urls:
            raise BackendError("the openai backend needs --base-url (once per server), e.g. http://127.0.0.1:8000/v1")
        if len(urls) == 1:
            retries = 5 if max_retries is None else max_retries
            client = OpenAIClient(
                urls[0],
                api_model,
                api_key_env=api_key_env,
                timeout=timeout,
                max_retries=retries,
                concurrency=concurrency,
            )
            return OpenAISampler(client, tokenizer)
        from thoughtlens.sample.fleet import FleetSampler

        # In a fleet a failing server is better left for another than retried at length.
        retries = 1 if max_retries is None else max_retries
        clients = [
            OpenAIClient(
                u,
                api_model,
                api_key_env=api_key_env,
                timeout=timeout,
                max_retries=retries,
                concurrency=concurrency,
                backoff_max=2.0,
            )
            for u in urls
        ]
        return FleetSampler(clients, tokenizer)
    if backend == "vllm":
        from thoughtlens.sample.vllm import VLLMSampler

        if api_model or not isinstance(model, str):
            model = api_model or getattr(model, "name", None)
        if not model:
            raise BackendError("the vllm backend needs a model id or directory: pass --model org/name (or a local dir)")
        return VLLMSampler(model, tensor_parallel_size=tensor_parallel_size, dtype=dtype or "auto", **engine_kwargs)
    raise BackendError(f"unknown backend '{backend}': use one of {', '.join(backend_names())}")


def sampler_provenance(sampler: Any) -> Provenance:
    """The sampler's provenance; for the hf backend (and any sampler without `.provenance()`), built from
    its model's name and tokenizer."""
    if hasattr(sampler, "provenance"):
        return sampler.provenance()
    from thoughtlens.model.load import tokenizer_identity

    model = getattr(sampler, "model", None)
    name = getattr(model, "name", None) or getattr(getattr(model, "config", None), "name_or_path", "") or ""
    return Provenance(
        getattr(sampler, "name", "hf"), str(name), "", tokenizer_identity(getattr(sampler, "tokenizer", None))
    )
