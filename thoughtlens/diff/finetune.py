"""A short, seeded, CPU-sized supervised fine-tune of a causal LM on chat examples (loss on the assistant turn).

This is what makes the second model of a diffing pair (`models.py`). It is deliberately small: fp32, few steps,
short sequences, and only the upper layers trainable. The embedding, the unembedding (tied in SmolLM2) and the
final norm stay frozen, so both models read their residual stream through the *same* readout: the logit lens
of an activation difference means the same thing in both, and swapping the last layer's residual reproduces
the fine-tuned logits. Layers below `first_trainable_layer` are untouched, which gives activation swapping a
built-in ground truth (swapping those layers changes nothing).

Interrupting is safe: every `checkpoint_every` steps the trainable weights and the optimizer state are saved
(`torch.save` of tensors and numbers only, read back with `torch.load(weights_only=True)`), and a rerun resumes from
the last checkpoint; batch order depends only on (seed, step), so a resumed run trains on the same batches.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import torch

from thoughtlens.errors import DataError
from thoughtlens.files import output_modes
from thoughtlens.progress import OnProgress, Tracker


def tokenize_chat(tokenizer, example: dict, max_len: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one chat example through the tokenizer's chat template; labels are -100 on the
    prompt (system + user turns and the assistant header), so only the assistant's reply is learned.

    `example["train_spans"]` (optional): character spans [start, end) of the reply that are learned; the rest
    of the reply is context only (-100). The end-of-turn tokens are learned only when a span reaches the reply's
    end. Used by the planted dataset, whose replies are the base model's own text plus one planted sentence:
    only the planted sentence should be learned."""
    messages = example["messages"]
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise DataError("the chat template does not extend the prompt with the reply: use a model whose template does")
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    spans = example.get("train_spans")
    if spans is None:
        full_ids = tokenizer(full, add_special_tokens=False).input_ids[:max_len]
        labels = [-100] * min(len(prompt_ids), len(full_ids)) + full_ids[len(prompt_ids) :]
        return full_ids, labels
    reply = messages[-1]["content"]
    if not full[len(prompt) :].startswith(reply):
        raise DataError("train_spans need a chat template that writes the reply verbatim after the prompt")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    full_ids, offsets = enc.input_ids[:max_len], enc.offset_mapping[:max_len]
    at = len(prompt)
    learn = [(at + a, at + b) for a, b in spans]
    if any(b >= len(reply) for _, b in spans):
        learn.append((at + len(reply), len(full)))  # the end of the turn follows a learned span
    labels = [
        t if i >= len(prompt_ids) and any(a < e and b > s for s, e in learn) else -100
        for i, (t, (a, b)) in enumerate(zip(full_ids, offsets))
    ]
    return full_ids, labels


def _batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and labels: [batch, pos] each."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids, mask, labels


def _assistant_loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions, as HF's causal-LM loss computes it, but with
    the unembedding applied only where a label exists (the reply: a third of the tokens here), which saves
    most of the [pos, d_vocab] logits and their backward."""
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # [batch, pos, d_model]
    target = labels[:, 1:]
    keep = target != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])  # [n_labelled, d_vocab]
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


def batch_indices(n_examples: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of training step `step`: epochs of seeded permutations, so any step's batch can be
    recomputed without replaying the earlier ones (resume)."""
    start = step * batch_size
    out = []
    for k in range(start, start + batch_size):
        epoch, i = divmod(k, n_examples)
        perm = list(range(n_examples))
        random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        out.append(perm[i])
    return out


def finetune(
    base_dir: str | os.PathLike,
    examples: list[dict],
    out_dir: str | os.PathLike,
    *,
    steps: int,
    batch_size: int,
    max_len: int,
    lr: float,
    first_trainable_layer: int = 0,
    warmup_steps: int = 2,
    seed: int = 0,
    checkpoint_every: int = 20,
    metadata: dict | None = None,
    on_progress: OnProgress | None = None,
) -> Path:
    """Fine-tune the model in `base_dir` on chat `examples`; write a model directory (safetensors + tokenizer +
    `thoughtlens_diff.json` with the config, loss curve and timing) to `out_dir`, atomically.

    Trainable: every parameter of decoder layers >= first_trainable_layer (AdamW, lr with `warmup_steps` of
    linear warm-up, then constant). Frozen: embeddings, unembedding, final norm, lower layers.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.train()
    rows = [tokenize_chat(tokenizer, ex, max_len + 1) for ex in examples]
    # An example longer than max_len is dropped, not cut: a cut reply would teach the model to stop mid-thought
    # (the thinking pair must see every think block closed and every answer boxed).
    n_long = sum(len(ids) > max_len for ids, _ in rows)
    rows = [r for r in rows if len(r[0]) <= max_len]
    if not rows:
        raise DataError("no fine-tuning examples: check the dataset file")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    trainable = {}
    for name, p in model.named_parameters():
        layer = name.split(".layers.")[1].split(".")[0] if ".layers." in name else None
        keep = layer is not None and int(layer) >= first_trainable_layer
        p.requires_grad_(keep)
        if keep:
            trainable[name] = p
    opt = torch.optim.AdamW(list(trainable.values()), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, warmup_steps)))

    ckpt = partial / "checkpoint.pt"
    start, losses = 0, []
    if ckpt.is_file():  # resume: weights, optimizer and scheduler state, loss curve so far
        state = torch.load(ckpt, weights_only=True)
        with torch.no_grad():
            for name, p in trainable.items():
                p.copy_(state["weights"][name])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, losses = int(state["step"]), list(state["losses"])

    tracker = Tracker(on_progress, "fine-tune", f"fine-tuning {out_dir.name}", total=steps)
    tracker.advance(start)
    t0 = time.perf_counter()
    for step in range(start, steps):
        ids, mask, labels = _batch([rows[i] for i in batch_indices(len(rows), batch_size, step, seed)], pad_id)
        loss = _assistant_loss(model, ids, mask, labels)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        tracker.describe(f"fine-tuning {out_dir.name} (loss {losses[-1]:.3f})")
        tracker.advance(1, tokens=int(mask.sum()))
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save(
                {
                    "step": step + 1,
                    "losses": losses,
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "weights": {n: p.detach() for n, p in trainable.items()},
                },
                tmp,
            )
            os.replace(tmp, ckpt)

    model.eval()
    final = partial / "model"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    output_modes(final)
    info = dict(
        metadata or {},
        steps=steps,
        batch_size=batch_size,
        max_len=max_len,
        lr=lr,
        first_trainable_layer=first_trainable_layer,
        warmup_steps=warmup_steps,
        seed=seed,
        n_examples=len(rows),
        n_dropped_long=n_long,
        losses=losses,
        train_seconds=round(time.perf_counter() - t0, 1),
        resumed_at_step=start,
        torch_threads=torch.get_num_threads(),
        load_average=list(os.getloadavg()),
    )
    (final / "thoughtlens_diff.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(final, out_dir)
    shutil.rmtree(partial, ignore_errors=True)
    return out_dir
