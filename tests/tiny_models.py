"""Tiny random models of every supported architecture, built from configs (no download)."""

from __future__ import annotations

import copy

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

_COMMON = dict(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=128,
)

CONFIGS = {
    "llama": lambda: LlamaConfig(**_COMMON, num_key_value_heads=2),
    "mistral": lambda: MistralConfig(**_COMMON, num_key_value_heads=2, sliding_window=None),
    "qwen2": lambda: Qwen2Config(**_COMMON, num_key_value_heads=2),
    "qwen3": lambda: Qwen3Config(**_COMMON, num_key_value_heads=2, head_dim=8),
    "gemma2": lambda: Gemma2Config(**_COMMON, num_key_value_heads=2, head_dim=8, sliding_window=4),
    "gemma3_text": lambda: Gemma3TextConfig(
        **_COMMON,
        num_key_value_heads=2,
        head_dim=8,
        sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    ),
    "gpt2": lambda: GPT2Config(vocab_size=97, n_embd=32, n_layer=3, n_head=4, n_positions=128),
    "gpt_neox": lambda: GPTNeoXConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=128,
        use_parallel_residual=True,
    ),
    "gpt_neox_sequential": lambda: GPTNeoXConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=128,
        use_parallel_residual=False,
    ),
}
ARCHS = list(CONFIGS)


def tiny_hf(arch: str, attn: str = "sdpa", seed: int = 0):
    """A random fp32 model of `arch`, in eval mode."""
    torch.manual_seed(seed)
    config = CONFIGS[arch]()
    if attn == "sdpa" and not AutoModelForCausalLM._model_mapping[type(config)]._supports_sdpa:
        attn = "eager"  # e.g. Gemma 2: HF serves it with eager attention only
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32)
    # Random init in some families is tiny (std 0.02); scale up so attention is not uniform.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.mul_(5.0)
    return model.eval()


def tiny_pair(arch: str, seed: int = 0):
    """(hf_model for wrapping, independent copy with eager attention, same weights)."""
    hf = tiny_hf(arch, seed=seed)
    ref = copy.deepcopy(hf)
    ref.set_attn_implementation("eager")
    return hf, ref


def random_tokens(batch: int = 2, pos: int = 12, vocab: int = 97, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, pos), generator=g)
