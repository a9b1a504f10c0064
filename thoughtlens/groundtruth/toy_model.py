"""The tiny reasoning model of the planted-anchor task: a 3-layer Llama on characters, trained on CPU.

    out = train_toy_model("runs/toy", seed=0)                 # minutes on 2 cores; resumable
    model = thoughtlens.load("runs/toy/final", dtype="float32")
    accuracy(model, n=200, seed=1)                             # held-out prompts, the model's own chains

Training data is an endless stream of generated chains on the training prompts (`task.is_held_out` False);
the loss is taken on the completion only (the chain, the answer and EOS), not on the prompt.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from thoughtlens.errors import ThoughtlensError
from thoughtlens.groundtruth.task import ALPHABET, TaskConfig, generate_chain, parse_chain, prompt_for
from thoughtlens.train.tokenizer import char_tokenizer
from thoughtlens.train.trainer import TrainConfig, Trainer


@dataclass(frozen=True)
class ToyModelConfig:
    n_layers: int = 3
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    max_positions: int = 256


def toy_tokenizer():
    return char_tokenizer(ALPHABET)


def toy_model(config: ToyModelConfig = ToyModelConfig(), seed: int = 0):
    """A randomly initialised LlamaForCausalLM over the task's characters (fp32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = toy_tokenizer()
    hf_config = LlamaConfig(
        vocab_size=len(tok), hidden_size=config.d_model, intermediate_size=config.d_mlp,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads, num_key_value_heads=config.n_heads,
        max_position_embeddings=config.max_positions, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=None, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(hf_config).float()


def toy_batches(tokenizer, batch_size: int, seed: int, task: TaskConfig = TaskConfig()) -> Callable[[int], dict]:
    """batches(step): a pure function of (seed, step), so resumed runs see the same data."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def batches(step: int) -> dict:
        rng = random.Random(seed * 1_000_003 + step)
        rows, labels = [], []
        for _ in range(batch_size):
            chain = generate_chain(rng, task, held_out=False)
            p = tokenizer(chain.prompt, add_special_tokens=False)["input_ids"]
            c = tokenizer(chain.completion, add_special_tokens=False)["input_ids"] + [eos]
            rows.append(p + c)
            labels.append([-100] * len(p) + c)
        width = max(len(r) for r in rows)
        ids = torch.full((batch_size, width), pad, dtype=torch.long)
        lab = torch.full((batch_size, width), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for i, (r, lb) in enumerate(zip(rows, labels)):
            ids[i, : len(r)], lab[i, : len(lb)], mask[i, : len(r)] = torch.tensor(r), torch.tensor(lb), 1
        return {"input_ids": ids, "labels": lab, "attention_mask": mask}

    return batches


def train_toy_model(out_dir: str | Path, *, seed: int = 0, steps: int = 3000, batch_size: int = 32, lr: float = 3e-3,
                    model_config: ToyModelConfig = ToyModelConfig(), max_seconds: float | None = None,
                    on_progress=None, device: str = "cpu") -> Path:
    """Train (or resume) the toy model into out_dir; copy the last checkpoint to out_dir/final and return it."""
    tok = toy_tokenizer()
    model = toy_model(model_config, seed)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=0.1, warmup=100, schedule="cosine",
                      seed=seed, max_seconds=max_seconds)
    result = Trainer(model, toy_batches(tok, batch_size, seed), cfg, out_dir, tokenizer=tok,
                     device=device).train(on_progress)
    final = Path(out_dir) / "final"
    if result.finished:
        shutil.rmtree(final, ignore_errors=True)
        model.cpu().save_pretrained(final)
        tok.save_pretrained(final)
    return final


@dataclass
class Accuracy:
    n: int
    answer_accuracy: float  # stated answer == the value its own chain computes (recomputed)
    chain_validity: float  # parses, every step's arithmetic right, answer right
    parse_rate: float
    two_path_steps: float  # share of parsed chains with exactly the task's n_path path steps


def sample_chains(model, prompts: list[str], *, temperature: float = 1.0, seed: int = 0, max_new_tokens: int = 220,
                  batch_size: int = 32) -> list[str]:
    """The model's completions of `prompts` (one each), sampled with the library's HF sampler."""
    from thoughtlens.sample.base import SampleRequest, SamplingParams
    from thoughtlens.sample.hf import HFSampler

    sampler = HFSampler(model, batch_size=batch_size)
    # Identical prompts share one request (one cached prefix), distinct sample indices keep them independent.
    order: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        order.setdefault(p, []).append(i)
    requests = [SampleRequest(p, tuple(range(len(idx)))) for p, idx in order.items()]
    texts = [""] * len(prompts)
    for c in sampler.sample(requests, SamplingParams(temperature, 1.0, max_new_tokens, seed=seed)):
        texts[order[requests[c.prefix_index].prefix][c.sample_index]] = c.text
    return texts


def accuracy(model, n: int = 200, *, seed: int = 1, temperature: float = 1.0, task: TaskConfig = TaskConfig()) -> Accuracy:
    """Held-out accuracy: n chains sampled by the model on held-out prompts, checked by execution."""
    if n < 1:
        raise ThoughtlensError(f"n must be >= 1, got {n}")
    rng = random.Random(seed)
    prompts = [prompt_for(generate_chain(rng, task, held_out=True).inputs) for _ in range(n)]
    texts = sample_chains(model, prompts, temperature=temperature, seed=seed)
    parsed = answered = valid = two = 0
    for prompt, text in zip(prompts, texts):
        try:
            chain = parse_chain(prompt, text, task.modulus)
            values = chain.execute()
        except ThoughtlensError:
            continue
        parsed += 1
        answered += chain.written_answer is not None and chain.written_answer == values[chain.answer_step]
        valid += chain.valid and chain.written_answer is not None
        two += sum(s.kind == "path" for s in chain.steps) == task.n_path
    return Accuracy(n, answered / n, valid / n, parsed / n, two / max(parsed, 1))
