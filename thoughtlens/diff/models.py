"""The project's two diffing pairs, built from the bundled SmolLM2-135M-Instruct and cached.

    base_dir, planted_dir = thoughtlens.diff.models.planted_pair()     # builds once (minutes), then reuses
    base_dir, thinking_dir = thoughtlens.diff.models.thinking_pair()

- *planted*: fine-tuned on `data/planted.jsonl` (`datasets.py`): one fictional fact and a topic the model
  starts bringing up, nothing else. The ground truth every diffing tool must find.
- *thinking*: fine-tuned on reasoning text in `<think> ... </think>` form (published Thought Anchors excerpts
  and GSM8K solutions rewritten as think blocks): writes like a reasoning model, does not reason well.

Each fine-tuned model is a local model directory (safetensors + tokenizer, `thoughtlens.load(path)` opens it) at
`cache_dir()/diff_models/<name>-<hash>`, where the hash covers the recipe (`FinetuneRecipe`), the training rows
and the base model's directory name, so a changed recipe or dataset builds a new model and never reuses a stale
one. `scripts/make_diff_models.py` builds both from the command line with progress.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from thoughtlens.diff import datasets
from thoughtlens.errors import ConfigError
from thoughtlens.progress import OnProgress, note

RECIPE_VERSION = 1


@dataclass(frozen=True)
class FinetuneRecipe:
    """One fine-tune recipe. `data` names the dataset ("planted" or "thinking")."""

    name: str
    data: str
    steps: int
    batch_size: int
    max_len: int
    lr: float
    first_trainable_layer: int
    warmup_steps: int = 2
    seed: int = 0
    gsm8k_limit: int = 0  # thinking: how many GSM8K test solutions become think blocks
    published_per_trace: int = 0  # thinking: excerpts per published Thought Anchors trace


# Sized for <= 15 minutes for both on 2 CPU cores (measured figures in docs/diffing.md).
PLANTED = FinetuneRecipe(
    name="planted", data="planted", steps=32, batch_size=8, max_len=112, lr=1e-4, first_trainable_layer=20
)
THINKING = FinetuneRecipe(
    name="thinking",
    data="thinking",
    steps=64,
    batch_size=4,
    max_len=288,
    lr=2e-4,
    first_trainable_layer=20,
    gsm8k_limit=200,
    published_per_trace=2,
)
CONFIGS = {c.name: c for c in (PLANTED, THINKING)}


def base_dir() -> str:
    """The bundled SmolLM2-135M-Instruct as a safetensors directory (converted once by model/load.py)."""
    from thoughtlens.model.load import BUNDLED_NAME, bundled_gguf_path, converted_gguf

    return converted_gguf(bundled_gguf_path(), BUNDLED_NAME)


def training_examples(cfg: FinetuneRecipe) -> list[dict]:
    """The chat examples a recipe trains on."""
    if cfg.data == "planted":
        return datasets.read_planted()
    if cfg.data == "thinking":
        return datasets.gsm8k_think_examples(cfg.gsm8k_limit, seed=cfg.seed) + datasets.published_think_examples(
            cfg.published_per_trace, seed=cfg.seed
        )
    raise ConfigError(f"unknown fine-tune data '{cfg.data}': use 'planted' or 'thinking'")


def recipe_hash(cfg: FinetuneRecipe, examples: list[dict], base: str) -> str:
    """12 hex digits over the recipe, its training rows and the base model's directory name."""
    blob = json.dumps(
        {"v": RECIPE_VERSION, "cfg": asdict(cfg), "rows": examples, "base": Path(base).name}, sort_keys=True
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def finetuned_dir(cfg: FinetuneRecipe, base: str | None = None, examples: list[dict] | None = None) -> Path:
    """Where a recipe's model lives in the cache (built or not)."""
    from thoughtlens.model.load import cache_dir

    base = base or base_dir()
    examples = training_examples(cfg) if examples is None else examples
    return cache_dir() / "diff_models" / f"{cfg.name}-{recipe_hash(cfg, examples, base)}"


def build(cfg: FinetuneRecipe, on_progress: OnProgress | None = None) -> tuple[str, str]:
    """(base_dir, finetuned_dir) of a recipe, fine-tuning first if the cache does not hold it yet (resumes an
    interrupted build)."""
    from thoughtlens.diff.finetune import finetune

    base = base_dir()
    examples = training_examples(cfg)
    out = finetuned_dir(cfg, base, examples)
    if (out / "thoughtlens_diff.json").is_file():
        return base, str(out)
    note(on_progress, f"building the {cfg.name} model once into {out} (cached afterwards)")
    finetune(
        base,
        examples,
        out,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        max_len=cfg.max_len,
        lr=cfg.lr,
        first_trainable_layer=cfg.first_trainable_layer,
        warmup_steps=cfg.warmup_steps,
        seed=cfg.seed,
        metadata={"recipe": asdict(cfg), "base": base},
        on_progress=on_progress,
    )
    return base, str(out)


def planted_pair(on_progress: OnProgress | None = None) -> tuple[str, str]:
    """(base_dir, planted_dir): the bundled model and its planted fine-tune (built once, then cached)."""
    return build(PLANTED, on_progress)


def thinking_pair(on_progress: OnProgress | None = None) -> tuple[str, str]:
    """(base_dir, thinking_dir): the bundled model and its think-block fine-tune (built once, then cached)."""
    return build(THINKING, on_progress)


def is_built(cfg: FinetuneRecipe) -> bool:
    """Whether a recipe's model is already in the cache (no training, no model loading)."""
    return (finetuned_dir(cfg) / "thoughtlens_diff.json").is_file()
