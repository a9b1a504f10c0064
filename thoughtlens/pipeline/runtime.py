"""The runtime of a job: the model (or only its tokenizer) and the sampler, built from one set of options.

Every job that samples (the anchors run, Thought Branches' resilience, interventions and transplant, the
demo) builds what it samples with here, from a `RuntimeOptions`, so that an option such as `--dtype` or
`--api-model` means the same thing, and is honoured, in every command:

    rt = build_runtime(RuntimeOptions(backend="hf", model=None, dtype="float32"))
    rt.model        # HookedModel (hf backend) or TokenizerOnly (openai, vllm: only prompts are built here)
    rt.sampler      # a Sampler over it
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from thoughtlens.dtypes import canonical_dtype
from thoughtlens.model.load import load, load_tokenizer
from thoughtlens.sample.base import Sampler
from thoughtlens.sample.registry import make_sampler


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how a job samples.

    backend: "hf" (a model loaded here), "openai" (OpenAI-compatible servers at `base_url`), "vllm" (an
      in-process engine), or a registered backend. model: a hub id or local path; None = the bundled model.
    base_url: one server URL or several (a fleet); api_model: the served model's id (default: the first the
      server lists); api_key_env: the environment variable that holds the API key (never the key itself).
    dtype: None = the loader's default (bf16 where the hardware is fast at it, else fp32). device: "cpu",
      "cuda", "cuda:1", or "auto" (accelerate places the layers over the visible GPUs).
    batch_size: hf rollouts per forward; concurrency: openai requests in flight per server;
    tensor_parallel_size: vllm GPUs per engine.
    """

    backend: str = "hf"
    model: str | None = None
    base_url: str | Sequence[str] | None = None
    api_model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    dtype: str | None = None
    device: str = "cpu"
    batch_size: int = 16
    concurrency: int = 8
    tensor_parallel_size: int = 1

    def __post_init__(self) -> None:
        if self.dtype is not None:
            canonical_dtype(self.dtype)  # one-line ConfigError before anything loads


@dataclass
class Runtime:
    """model: a HookedModel (hf backend) or a TokenizerOnly (remote and vLLM backends); sampler: over it."""

    model: Any
    sampler: Sampler

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def name(self) -> str:
        return getattr(self.model, "name", "") or getattr(self.sampler, "model_name", "")


def load_for(options: RuntimeOptions):
    """What a job needs locally: the whole model for the hf backend, only the tokenizer for the others."""
    if options.backend == "hf":
        placement = {"device_map": "auto"} if options.device == "auto" else {"device": options.device}
        return load(options.model, dtype=options.dtype, **placement)
    return load_tokenizer(options.model)


def build_runtime(options: RuntimeOptions, *, model: Any = None, answer_done: Callable | None = None) -> Runtime:
    """The model (loaded here unless `model` is given) and the sampler of `options.backend` over it.

    answer_done: the hf backend's early stop (e.g. `anchors.importance.black_box.answer_complete`)."""
    lm = model if model is not None else load_for(options)
    engine_model = lm if options.backend != "vllm" else (options.model or getattr(lm, "name", None))
    sampler = make_sampler(
        options.backend,
        model=engine_model,
        tokenizer=lm.tokenizer,
        base_url=options.base_url,
        api_model=options.api_model,
        api_key_env=options.api_key_env,
        batch_size=options.batch_size,
        answer_done=answer_done,
        concurrency=options.concurrency,
        tensor_parallel_size=options.tensor_parallel_size,
        **({"dtype": options.dtype} if options.backend == "vllm" and options.dtype else {}),
    )
    return Runtime(lm, sampler)
