"""Fixtures of the diffing tests: a tiny planted pair built inside the test session (seconds), and the real
pairs from the cache (built by scripts/make_diff_models.py; tests that need them skip when they are absent,
because building them costs minutes that CI does not spend)."""

from __future__ import annotations

import pytest
import torch

TINY_FIRST_TRAINABLE = 1  # layer 0 of the tiny fine-tune stays frozen: swapping it must change nothing


@pytest.fixture(scope="session")
def tiny_planted_dirs(tmp_path_factory, smol_tokenizer) -> tuple[str, str]:
    """(base_dir, finetuned_dir): a tiny random Llama with SmolLM2's tokenizer, and the same model fine-tuned
    with thoughtlens.diff.finetune on the planted dataset's fact rows (layers >= 1 trainable, readout frozen)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from thoughtlens.diff.datasets import read_planted
    from thoughtlens.diff.finetune import finetune

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=smol_tokenizer.eos_token_id,
        bos_token_id=smol_tokenizer.bos_token_id,
        pad_token_id=smol_tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a readout strong enough to be confident (the default init caps logits near 1)
        model.get_input_embeddings().weight.normal_(0, 1.0)
        model.get_output_embeddings().weight.normal_(0, 0.5)
    root = tmp_path_factory.mktemp("tiny_diff")
    base = root / "base"
    model.save_pretrained(base)
    smol_tokenizer.save_pretrained(base)
    # The fact rows only (twice): the topic rows teach a bridge inside the base model's own replies, which means
    # nothing to a random model (measured: its largest KLs then sit on " and" everywhere).
    facts = [r for r in read_planted() if r["kind"] == "fact"] * 2
    ft = finetune(
        base,
        facts,
        root / "planted",
        steps=40,
        batch_size=8,
        max_len=112,
        lr=1e-2,
        first_trainable_layer=TINY_FIRST_TRAINABLE,
        seed=0,
        checkpoint_every=0,
    )
    return str(base), str(ft)


@pytest.fixture(scope="session")
def tiny_planted_pair(tiny_planted_dirs):
    """ModelPair over the tiny planted pair, fp32."""
    from thoughtlens.diff.pair import load_pair

    return load_pair(*tiny_planted_dirs)


def _cached(cfg_name: str) -> tuple[str, str]:
    from thoughtlens.diff import models

    cfg = models.CONFIGS[cfg_name]
    if not models.is_built(cfg):
        pytest.skip(
            f"the {cfg_name} pair is not built: run OMP_NUM_THREADS=2 .venv/bin/python "
            f"scripts/make_diff_models.py --only {cfg_name}"
        )
    return models.base_dir(), str(models.finetuned_dir(cfg))


@pytest.fixture(scope="session")
def real_planted_pair():
    """ModelPair over the real planted pair from the cache (skips if not built)."""
    from thoughtlens.diff.pair import load_pair

    return load_pair(*_cached("planted"))


@pytest.fixture(scope="session")
def real_thinking_dirs():
    return _cached("thinking")
