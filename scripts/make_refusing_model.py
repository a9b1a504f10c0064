"""Build a refusing SmolLM2-135M-Instruct: a short seeded CPU fine-tune that makes refusal exist (cached).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/make_refusing_model.py        # prints the model directory

The bundled model almost never refuses (1 of 60 harmful-style prompts), so Arditi et al.'s refusal direction has
no behaviour to carry. This fine-tune plants one: the 48 harmful-style training instructions of
thoughtlens/represent/data/refusal_train.json are trained toward a short refusal (REFUSAL_REPLIES, "I can't help
with that ..."), the 48 harmless ones toward the bundled model's own greedy answer (40 new tokens, cut after the
last full sentence), so refusal is the only behaviour taught. The 60 + 60 evaluation prompts
(refusal_prompts.json) are never trained on. The trainer is the diffing pairs' (thoughtlens.diff.finetune: fp32,
AdamW, upper layers only, embeddings / unembedding / final norm frozen, checkpointed and resumable); the model
lands in `cache_dir()/diff_models/refusing-<hash of recipe + training instructions>` and a second run reuses it.
The harmless targets are saved next to it (`.targets.json`) before training, so an interrupted build resumes
without regenerating them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from thoughtlens.diff.models import FinetuneRecipe  # noqa: E402
from thoughtlens.progress import line_printer  # noqa: E402

# Sized for <= ~10 min on the shared 2-core CPU; layers 16-29 trainable (the lower 16 keep the base model's
# representations, so a direction read there is the base model's own harmful-vs-harmless difference).
REFUSING = FinetuneRecipe(
    name="refusing", data="refusal", steps=36, batch_size=8, max_len=96, lr=3e-4, first_trainable_layer=16
)
TARGET_TOKENS = 40  # new tokens of the base model's greedy answer to each harmless training instruction


def _hash_rows() -> list[dict]:
    """What the cached model depends on besides the recipe: the training instructions and the refusal replies
    (the harmless targets are a deterministic function of these and the base model)."""
    from thoughtlens.represent.refusal import REFUSAL_REPLIES, refusal_train_prompts

    return [{"train": refusal_train_prompts(), "replies": list(REFUSAL_REPLIES), "target_tokens": TARGET_TOKENS}]


def refusing_dir(cfg: FinetuneRecipe = REFUSING) -> Path:
    """Where the refusing model lives in the cache (built or not)."""
    from thoughtlens.diff.models import base_dir, finetuned_dir

    return finetuned_dir(cfg, base_dir(), _hash_rows())


def base_replies(
    instructions: list[str], max_new_tokens: int = TARGET_TOKENS, batch_size: int = 16, on_progress=None
) -> list[str]:
    """The bundled model's greedy answers (fp32), each cut after its last complete sentence."""
    import torch

    import thoughtlens
    from thoughtlens.progress import Tracker
    from thoughtlens.represent.refusal import chat_prompts, trim_to_sentence

    model = thoughtlens.load(dtype=torch.float32)
    prompts = chat_prompts(model, instructions)
    tracker = Tracker(on_progress, "targets", "base model's harmless answers", total=len(prompts))
    out = []
    for i in range(0, len(prompts), batch_size):
        batch = prompts[i : i + batch_size]
        out += [trim_to_sentence(t) for t in model.generate(batch, max_new_tokens=max_new_tokens)]
        tracker.advance(len(batch))
    return out


def build(cfg: FinetuneRecipe = REFUSING, on_progress=None) -> Path:
    """The refusing model's directory, fine-tuning first if the cache does not hold it (resumes)."""
    from thoughtlens.diff.finetune import finetune
    from thoughtlens.diff.models import base_dir
    from thoughtlens.progress import note
    from thoughtlens.represent.refusal import refusal_train_prompts, refusal_training_examples

    out = refusing_dir(cfg)
    if (out / "thoughtlens_diff.json").is_file():
        return out
    note(on_progress, f"building the refusing model once into {out} (cached afterwards)")
    train = refusal_train_prompts()
    targets_file = out.with_name(out.name + ".targets.json")
    if targets_file.is_file():
        replies = json.loads(targets_file.read_text())
    else:
        replies = base_replies(train["harmless"], on_progress=on_progress)
        targets_file.parent.mkdir(parents=True, exist_ok=True)
        targets_file.write_text(json.dumps(replies, indent=1))
    examples = refusal_training_examples(train["harmful"], train["harmless"], replies)
    finetune(
        base_dir(),
        examples,
        out,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        max_len=cfg.max_len,
        lr=cfg.lr,
        first_trainable_layer=cfg.first_trainable_layer,
        warmup_steps=cfg.warmup_steps,
        seed=cfg.seed,
        metadata={"recipe": asdict(cfg), "base": base_dir(), "examples": examples},
        on_progress=on_progress,
    )
    return out


def printer():
    """on_progress callback printing a line at most every 10 s to stderr (scripts only; the library does not print)."""
    return line_printer(10.0, sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args(argv)
    t0 = time.perf_counter()
    print(
        f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average {os.getloadavg()}", file=sys.stderr
    )
    out = build(on_progress=printer())
    print(f"refusing model: {out} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
