"""The small trainer: same weights as a plain AdamW loop, exact resume, checkpoints thoughtlens.load opens."""

from __future__ import annotations

import math

import numerics
import pytest
import torch

import thoughtlens
from thoughtlens.errors import ThoughtlensError
from thoughtlens.train.checkpoints import Checkpoints
from thoughtlens.train.tokenizer import char_tokenizer
from thoughtlens.train.trainer import Trainer, TrainerConfig, checkpoint_dirs, log_spaced_steps

ALPHABET = "abcdefgh ."


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = char_tokenizer(ALPHABET)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg).float(), tok


def batches(step: int) -> dict:
    g = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(3, 3 + len(ALPHABET), (4, 12), generator=g)
    return {"input_ids": ids, "labels": ids.clone()}


CFG = TrainerConfig(steps=8, batch_size=4, lr=1e-2, warmup=3, n_checkpoints=4, log_every=2, seed=0)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-exact comparisons
    yield
    torch.set_num_threads(old)


def test_log_spaced_steps():
    steps = log_spaced_steps(10000, 9)
    assert steps[0] == 1 and steps[-1] == 10000 and steps == sorted(set(steps))
    ratios = [b / a for a, b in zip(steps[2:], steps[3:])]  # rounding distorts the first ratios
    assert all(abs(math.log(r) - math.log(10000) / 8) < 0.05 for r in ratios)
    assert log_spaced_steps(5, 1) == [5]


@pytest.mark.slow
def test_matches_a_plain_adamw_loop(tmp_path):
    model, tok = tiny_llama()
    Trainer(model, batches, CFG, tmp_path / "run", tokenizer=tok).train()

    ref, _ = tiny_llama()
    decay = [p for p in ref.parameters() if p.ndim >= 2]
    rest = [p for p in ref.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": CFG.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=CFG.lr,
        betas=CFG.betas,
    )
    for step in range(CFG.steps):  # linear warm-up, then cosine to 10 % (re-derived here)
        lr = (
            CFG.lr * (step + 1) / CFG.warmup
            if step < CFG.warmup
            else CFG.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - CFG.warmup) / (CFG.steps - CFG.warmup))))
        )
        for g in opt.param_groups:
            g["lr"] = lr
        b = batches(step)
        loss = ref(input_ids=b["input_ids"], labels=b["labels"]).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
    for (name, a), b in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(a, b), name


def test_resume_gives_the_same_weights(tmp_path):
    straight, tok = tiny_llama()
    Trainer(straight, batches, CFG, tmp_path / "a", tokenizer=tok).train()

    first, _ = tiny_llama()
    stopped = Trainer(first, batches, TrainerConfig(**{**CFG.__dict__, "max_seconds": 0.0}), tmp_path / "b").train()
    assert stopped.step == 1 and not stopped.finished
    resumed_model, _ = tiny_llama(seed=123)  # different init: everything must come from the checkpoint
    result = Trainer(resumed_model, batches, CFG, tmp_path / "b").train()
    assert result.resumed_from == 1 and result.finished
    for (name, a), b in zip(straight.named_parameters(), resumed_model.parameters()):
        assert torch.equal(a, b), name


def test_checkpoints_open_with_thoughtlens_load_and_measure(tmp_path):
    model, tok = tiny_llama()
    Trainer(model, batches, CFG, tmp_path / "run", tokenizer=tok).train()
    dirs = checkpoint_dirs(tmp_path / "run")
    assert [int(d.name.split("_")[1]) for d in dirs] == log_spaced_steps(CFG.steps, CFG.n_checkpoints)
    ckpts = Checkpoints(tmp_path / "run")
    last = ckpts.load()
    ids = batches(99)["input_ids"]
    with torch.no_grad():
        got, want = last(ids), model(input_ids=ids).logits
    assert got.dtype == torch.float32  # Checkpoints.load opens checkpoints in float32
    # the same weights through thoughtlens's forward and the plain one: float32 rounding through the layers
    numerics.assert_close(got, want, dtype=torch.float32, depth=model.config.num_hidden_layers)
    assert last.tokenizer.decode(last.tokenizer("abc .")["input_ids"]) == "abc ."

    def loss(m):
        with torch.no_grad():
            return {"loss": float(m.hf_model(input_ids=ids, labels=ids).loss)}

    df = ckpts.measure(loss)
    assert list(df["step"]) == ckpts.steps and df["loss"].iloc[-1] < df["loss"].iloc[0]
    assert ckpts.plot(df, tmp_path / "m.png").stat().st_size > 1000


def test_bad_input(tmp_path):
    with pytest.raises(ThoughtlensError, match="steps"):
        TrainerConfig(steps=0)
    with pytest.raises(ThoughtlensError, match="schedule"):
        TrainerConfig(steps=3, schedule="linear")
    with pytest.raises(ThoughtlensError, match="no checkpoint directory"):
        Checkpoints(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ThoughtlensError, match="no step_NNNNNN"):
        Checkpoints(tmp_path / "empty")
    model, tok = tiny_llama()
    Trainer(model, batches, TrainerConfig(**{**CFG.__dict__, "max_seconds": 0.0}), tmp_path / "r").train()
    with pytest.raises(ThoughtlensError, match="different lr"):
        Trainer(tiny_llama()[0], batches, TrainerConfig(**{**CFG.__dict__, "lr": 0.5}), tmp_path / "r").train()
    assert thoughtlens.load(str(checkpoint_dirs(tmp_path / "r")[0]), dtype="float32").tokenizer is None
