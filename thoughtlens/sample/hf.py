"""The Hugging Face sampler: many continuations of one prefix, sharing that prefix's KV cache.

Why not `model.generate(num_return_sequences=N)`: generate re-encodes the prefix for each of the N
rows, and keeps decoding rows that are already done. Here the prefix is encoded once, its KV cache
is repeated across a batch of rows, and a row leaves the batch as soon as it has hit EOS, a stop
string, or (optionally) a complete answer.

Each row samples with its own `torch.Generator` seeded by `rollout_seed(seed, prefix, index)`, so a
rollout depends on its prefix and index, not on which other rows happen to share its batch - up to
the float noise of batched matmuls, which the anchors runner removes by always regenerating whole
batches (see `deterministic_batch`).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from typing import ContextManager

import torch

from thoughtlens.model.hooked_model import as_causal_lm
from thoughtlens.sample.base import Completion, OnCompletion, SampleRequest, SamplingParams, rollout_seed

AnswerDone = Callable[[str], bool]


class HFSampler:
    """Sampler over a HookedModel (or any HF causal LM + tokenizer).

    batch_size: rows decoded together; also the unit of determinism for resumed runs.
    answer_done: optional predicate on the text so far; True ends the row with finish_reason "answer".
    intervention: optional zero-argument function returning a context manager that is open while this
        sampler decodes, e.g. `lambda: add_direction(model, "blocks.12.hook_resid_post", v, scale=4)`
        (thoughtlens.model.interventions): a steered model is resampled like any other. Interventions
        entered around `sample()` by the caller work the same way.
    """

    name = "hf"

    def __init__(
        self,
        model,
        *,
        batch_size: int = 16,
        answer_done: AnswerDone | None = None,
        intervention: Callable[[], ContextManager] | None = None,
    ):
        self.model = model
        self.lm = as_causal_lm(model)  # HookedModel's decoding interface, also over a plain HF causal LM
        self.tokenizer = model.tokenizer
        self.batch_size = batch_size
        self.deterministic_batch = batch_size
        self.answer_done = answer_done
        self.intervention = intervention
        self.tokens_generated = 0
        self.seconds = 0.0
        eos = self.lm.generation_config.eos_token_id if self.lm.generation_config else None
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {e for e in [*eos, self.tokenizer.eos_token_id] if e is not None}

    @property
    def device(self) -> torch.device:
        return self.lm.device

    def _encode(self, text: str) -> torch.Tensor:
        """prefix tokens [1, pos]. The prefix is model input text (chat template already applied)."""
        if hasattr(self.model, "to_tokens"):
            return self.model.to_tokens(text)
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids.to(self.device)

    @torch.no_grad()
    def sample(
        self,
        requests: Sequence[SampleRequest],
        params: SamplingParams,
        on_completion: OnCompletion | None = None,
    ) -> list[Completion]:
        done: list[Completion] = []
        with self.intervention() if self.intervention is not None else contextlib.nullcontext():
            self._sample(requests, params, on_completion, done)
        return done

    def _sample(self, requests, params: SamplingParams, on_completion, done: list[Completion]) -> None:
        for prefix_index, req in enumerate(requests):
            if not req.sample_indices:
                continue
            prefix_ids = self._encode(req.prefix)
            out = self.lm.run_cached(prefix_ids)
            for start in range(0, len(req.sample_indices), self.batch_size):
                indices = req.sample_indices[start : start + self.batch_size]
                cache = copy.deepcopy(out.past_key_values)
                for c in self._decode(req.prefix, prefix_index, indices, cache, out.logits[:, -1], params):
                    done.append(c)
                    if on_completion is not None:
                        on_completion(c)
        return done

    def _decode(self, prefix, prefix_index, indices, cache, last_logits, params: SamplingParams):
        """Decode len(indices) rows from one cached prefix; yield each Completion as its row finishes."""
        t0 = time.perf_counter()
        rows = len(indices)
        cache.batch_repeat_interleave(rows)
        logits = last_logits.expand(rows, -1)
        gens = [torch.Generator(device=self.device).manual_seed(rollout_seed(params.seed, prefix, i)) for i in indices]
        alive = list(range(rows))  # row r of the current batch is original row alive[r]
        tokens: list[list[int]] = [[] for _ in range(rows)]
        texts = [""] * rows
        for step in range(params.max_new_tokens):
            next_ids = _sample_next(logits, params, [gens[a] for a in alive])
            keep = []
            for r, a in enumerate(alive):
                tok = int(next_ids[r])
                reason = None
                if tok in self.eos_ids:
                    reason = "stop"
                else:
                    tokens[a].append(tok)
                    texts[a] = self.tokenizer.decode(tokens[a], skip_special_tokens=True)
                    reason = self._finished(texts[a], params)
                    if reason is None and step == params.max_new_tokens - 1:
                        reason = "length"
                if reason is None:
                    keep.append(r)
                    continue
                text = _cut_at_stop(texts[a], params.stop) if reason == "stop" else texts[a]
                self.tokens_generated += len(tokens[a])
                yield Completion(prefix_index, indices[a], text, len(tokens[a]) + (reason == "stop"), reason)
            if not keep:
                break
            if len(keep) < len(alive):  # drop finished rows from the batch and the cache
                cache.batch_select_indices(torch.tensor(keep, device=self.device))
                next_ids = next_ids[keep]
                alive = [alive[r] for r in keep]
            out = self.lm.run_cached(next_ids[:, None], past_key_values=cache)
            logits = out.logits[:, -1]
        self.seconds += time.perf_counter() - t0

    def _finished(self, text: str, params: SamplingParams) -> str | None:
        if params.stop and any(s in text for s in params.stop):
            return "stop"
        if self.answer_done is not None and self.answer_done(text):
            return "answer"
        return None


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """Cut the text before the earliest stop string (stop strings are not part of a completion)."""
    cuts = [text.find(s) for s in stops if s in text]
    return text[: min(cuts)] if cuts else text


def _sample_next(logits: torch.Tensor, params: SamplingParams, gens: list[torch.Generator]) -> torch.Tensor:
    """logits: [rows, vocab] -> next token ids [rows]. Temperature 0 is greedy."""
    if params.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    # A full sort of ~50k entries per row costs as much as the forward; the nucleus is almost always
    # inside the top 256, so sort only those and fall back to the full sort when it is not (exact either way).
    sorted_p, order = probs.topk(min(256, probs.shape[-1]), dim=-1)
    if params.top_p >= 1.0 or bool((sorted_p.sum(-1) <= params.top_p).any()):
        sorted_p, order = probs.sort(-1, descending=True)
    if params.top_p < 1.0:
        # Keep the smallest set of tokens whose mass reaches top_p (the first token always stays).
        sorted_p = sorted_p.masked_fill(sorted_p.cumsum(-1) - sorted_p > params.top_p, 0.0)
    # Sample within the nucleus only: multinomial over ~50k entries per row costs more than the forward.
    k = int((sorted_p > 0).sum(-1).max())
    sorted_p, order = sorted_p[:, :k], order[:, :k]
    # One generator per row: a row's draw never depends on its neighbours in the batch.
    picks = torch.stack([torch.multinomial(sorted_p[r], 1, generator=g)[0] for r, g in enumerate(gens)])
    return order.gather(-1, picks[:, None])[:, 0]
