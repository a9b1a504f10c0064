"""The vllm backend: vLLM's in-process engine, for GPU machines (`pip install 'thoughtlens[vllm]'`).

vLLM is optional and imported only when a VLLMSampler is built, so the rest of thoughtlens never needs
it. Rollouts go to the engine in chunks of `chunk_size` (one `LLM.generate` call each): within a chunk
vLLM batches everything and shares the KV cache of common prefixes (automatic prefix caching), and
between chunks `on_completion` is called so the caller commits finished rollouts as the run goes.
Each rollout carries its own seed (`rollout_seed`), as in the other backends.
"""

from __future__ import annotations

from typing import Any, Sequence

from thoughtlens.errors import BackendError
from thoughtlens.sample.base import Completion, OnCompletion, SampleRequest, SamplingParams, rollout_seed
from thoughtlens.sample.provenance import Provenance


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise BackendError(
            f"vLLM is not installed ({exc}): pip install 'thoughtlens[vllm]' on a GPU machine, "
            "or use --backend hf|openai"
        ) from None
    return vllm


class VLLMSampler:
    """Sampler over a vLLM `LLM` engine loaded from `model` (hub id or local dir).

    tensor_parallel_size: GPUs the model is split over (vLLM's own option; 1 = one GPU).
    dtype: "auto" (the checkpoint's), "bfloat16", "float16" or "float32" (seeded results reproduce
        bit for bit only in float32, see ../shared/ENVIRONMENT.md).
    engine_kwargs go to `vllm.LLM` (e.g. gpu_memory_utilization=0.8, max_model_len=8192, enforce_eager=True).
    vLLM runs its engine in child processes: a script that builds one needs an `if __name__ == "__main__":` guard.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        chunk_size: int = 256,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        **engine_kwargs: Any,
    ):
        self._vllm = _import_vllm()
        if chunk_size < 1:
            raise BackendError(
                f"chunk_size must be >= 1, got {chunk_size}: pass a positive number of rollouts per engine call"
            )
        if tensor_parallel_size < 1:
            raise BackendError(
                f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}: pass the number of GPUs"
            )
        self.model = model
        self.chunk_size = chunk_size
        engine_kwargs.setdefault("enable_prefix_caching", True)
        if tensor_parallel_size != 1:  # vLLM's defaults otherwise: keep the engine call minimal
            engine_kwargs["tensor_parallel_size"] = tensor_parallel_size
        if dtype != "auto":
            engine_kwargs["dtype"] = dtype
        self.llm = self._vllm.LLM(model=model, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer() if hasattr(self.llm, "get_tokenizer") else None

    def __repr__(self) -> str:
        return f"VLLMSampler(model={self.model!r})"

    def provenance(self) -> Provenance:
        """Backend, model (as given to the engine), no URL, the engine tokenizer's identity."""
        from thoughtlens.model.load import tokenizer_identity  # lazy: it imports torch

        return Provenance("vllm", self.model, "", tokenizer_identity(self.tokenizer))

    def sample(
        self,
        requests: Sequence[SampleRequest],
        params: SamplingParams,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]:
        """Continue every (prefix, sample_index); returns completions in request order."""
        if params.max_new_tokens < 1:
            raise BackendError(f"max_new_tokens must be >= 1, got {params.max_new_tokens}: raise --max-new-tokens")
        jobs = [(p, s, r.prefix) for p, r in enumerate(requests) for s in r.sample_indices]
        out: list[Completion] = []
        for start in range(0, len(jobs), self.chunk_size):
            chunk = jobs[start : start + self.chunk_size]
            for completion in self._generate(chunk, params):
                out.append(completion)
                if on_completion is not None:
                    on_completion(completion)
        return out

    def _generate(self, chunk: list[tuple[int, int, str]], params: SamplingParams) -> list[Completion]:
        """One engine call; vLLM returns outputs in input order."""
        sampling = [self._sampling_params(params, rollout_seed(params.seed, prefix, s)) for _, s, prefix in chunk]
        results = self.llm.generate([prefix for _, _, prefix in chunk], sampling, use_tqdm=False)
        completions = []
        for (p, s, _), result in zip(chunk, results, strict=True):
            gen = result.outputs[0]
            reason = "length" if gen.finish_reason == "length" else "stop"
            completions.append(Completion(p, s, gen.text, len(gen.token_ids), reason))
        return completions

    def _sampling_params(self, params: SamplingParams, seed: int) -> Any:
        return self._vllm.SamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            seed=seed,
        )
