"""The toy model's two training phases: layout, resume, and the phase-2 data (all non-held-out digit pairs)."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file

from thoughtlens.groundtruth.task import TaskConfig
from thoughtlens.groundtruth.toy_model import (
    ToyFinetuneConfig,
    ToyModelConfig,
    toy_batches,
    toy_tokenizer,
    train_toy_model,
)

TINY = ToyModelConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, max_positions=256)


def _prompts(batch: dict, tok) -> list[tuple[int, int]]:
    """(x, y) of every row, read back from the token ids with a regex (not from the generator)."""
    texts = [tok.decode(row.tolist(), skip_special_tokens=True) for row in batch["input_ids"]]
    return [tuple(map(int, re.match(r"x=(\d) y=(\d)\n", t).groups())) for t in texts]


def test_phase_two_data_has_same_parity_prompts_and_no_held_out_one():
    tok = toy_tokenizer()
    rows = [p for step in range(4) for p in _prompts(toy_batches(tok, 16, 1, TaskConfig(train_pairs="all"))(step), tok)]
    assert any((x - y) % 2 == 0 for x, y in rows)  # same parity: never in phase 1's 40 prompts
    assert not any(abs(x - y) == 5 for x, y in rows)  # the held-out prompts
    phase1 = [p for step in range(4) for p in _prompts(toy_batches(tok, 16, 0)(step), tok)]
    assert all((x - y) % 2 == 1 and abs(x - y) != 5 for x, y in phase1)


@pytest.mark.slow
def test_two_phases_layout_and_resume(tmp_path):
    out = tmp_path / "toy"
    ft = ToyFinetuneConfig(steps=2, warmup=1, batch_size=4)
    final = train_toy_model(out, seed=0, steps=3, batch_size=4, model_config=TINY, finetune=ft)
    assert final == out / "final"
    pre, fin = load_file(out / "pretrained" / "model.safetensors"), load_file(final / "model.safetensors")
    assert (out / "step_000003").is_dir() and (out / "finetune" / "step_000002").is_dir()
    assert any(not torch.equal(pre[k], fin[k]) for k in pre)  # phase 2 moved the weights
    # Phase 1 is done (pretrained/ exists) and phase 2 finished: a second call trains nothing.
    log = (out / "finetune" / "log.jsonl").read_text()
    train_toy_model(out, seed=0, steps=3, batch_size=4, model_config=TINY, finetune=ft)
    assert (out / "finetune" / "log.jsonl").read_text() == log
    again = load_file(final / "model.safetensors")
    assert all(torch.equal(fin[k], again[k]) for k in fin)
    # Without phase 2 the finished model is phase 1's.
    only = train_toy_model(tmp_path / "one", seed=0, steps=3, batch_size=4, model_config=TINY, finetune=None)
    one = load_file(only / "model.safetensors")
    assert all(torch.equal(one[k], pre[k]) for k in pre)
