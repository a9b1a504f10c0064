"""The activation-difference lens: what a fine-tune adds to the residual stream, read as tokens and used to steer.

    diff = activation_difference(pair, read_corpus("neutral"))       # on text unrelated to the fine-tune
    lens_top_tokens(pair.finetuned, diff.pooled(L), k=20)            # logit lens of the mean difference
    distinctive_top_tokens(pair.finetuned, diff.pooled(L), other.pooled(L))  # minus another fine-tune's lens
    vec = steering_vector(diff, L)                                   # scaled to the base model's resid norm
    with add_direction(pair.base, f"blocks.{L}.hook_resid_post", vec, scale=1.0): ...

This is the method of "Narrow Finetuning Leaves Clearly Readable Traces in Activation Differences"
(arXiv 2510.13900), as its code does it (science-of-finetuning/diffing-toolkit,
`src/diffing/methods/activation_difference_lens/act_diff_lens.py`): take the first `n_positions` tokens of each
text of an unrelated corpus (`load_and_tokenize_dataset`), run both models, keep each decoder layer's output
(`model.layers[L].output[0]`, our `blocks.L.hook_resid_post`), and average `ft - base` over texts separately for
each position (`compute_differences`: `mean_diff = diff.mean(dim=0)`, one vector per position); the logit lens
reads a mean difference through the fine-tuned model's final norm and unembedding (`_cache_logit_lens_for_layer`).
For steering, the toolkit rescales a direction to the model's typical activation norm at that layer (measured
after skipping the first 5 positions, `_compute_and_save_norms`), which `steering_vector` does too; the
toolkit then searches the strength with an LLM grader, which we replace by a fixed, documented `scale`.

`pooled(L)` (the mean over positions 1..n-1) is our named addition: one vector per layer for the page and the
CLI. Position 0 is left out of it because its activations (the attention sink) are far larger than the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from thoughtlens.diff.pair import ModelPair
from thoughtlens.errors import ConfigError
from thoughtlens.progress import OnProgress, Tracker


@dataclass
class ActivationDiff:
    """mean_diff: [n_layers, n_positions, d_model] = mean over texts of (ft - base) at blocks.L.hook_resid_post;
    base_norm: [n_layers] the base model's mean ||resid|| at positions >= 5 of the same texts (the toolkit's norm
    estimate; all positions if the texts are shorter); n_texts: how many texts went in."""

    mean_diff: torch.Tensor
    base_norm: torch.Tensor
    n_texts: int

    def pooled(self, layer: int) -> torch.Tensor:
        """[d_model]: the mean difference over positions 1..n-1 at `layer` (position 0 alone if n == 1)."""
        d = self.mean_diff[layer]
        return d[1:].mean(0) if d.shape[0] > 1 else d[0]


def _texts_to_ids(model, texts: Sequence[str], n_positions: int) -> torch.Tensor:
    """[n_texts, n_positions]: the first n tokens of each text (texts shorter than that are skipped, as the
    toolkit does)."""
    rows = [ids[:n_positions] for ids in (model.to_tokens(t)[0] for t in texts) if len(ids) >= n_positions]
    if not rows:
        raise ConfigError(f"no text of the corpus has {n_positions} tokens: pass longer texts or a smaller n_positions")
    return torch.stack(rows)


@torch.no_grad()
def activation_difference(
    pair: ModelPair,
    texts: Sequence[str],
    *,
    n_positions: int = 16,
    batch_size: int = 16,
    norm_skip: int = 5,
    on_progress: OnProgress | None = None,
) -> ActivationDiff:
    """The mean residual-stream difference (fine-tuned minus base) per layer and position over `texts`."""
    if n_positions < 1:
        raise ConfigError(f"n_positions must be >= 1, got {n_positions}")
    ids = _texts_to_ids(pair.base, texts, n_positions)
    names = [f"blocks.{L}.hook_resid_post" for L in range(pair.n_layers)]
    total = torch.zeros(pair.n_layers, n_positions, pair.d_model, dtype=torch.float64)
    norm_sum = torch.zeros(pair.n_layers, dtype=torch.float64)
    norm_count = 0
    tracker = Tracker(on_progress, "lens", "activation differences", total=len(ids))
    skip = norm_skip if n_positions > norm_skip else 0
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        _, cb = pair.base.run_with_cache(batch, names_filter=names)
        _, cf = pair.finetuned.run_with_cache(batch.to(pair.finetuned.device), names_filter=names)
        rb = cb.stack("resid_post").double().cpu()  # [layer, batch, pos, d_model]
        rf = cf.stack("resid_post").double().cpu()
        total += (rf - rb).sum(1)
        norm_sum += rb[:, :, skip:].norm(dim=-1).sum((1, 2))
        norm_count += rb[:, :, skip:].shape[1] * rb[:, :, skip:].shape[2]
        tracker.advance(len(batch), tokens=batch.numel())
    return ActivationDiff((total / len(ids)).float(), (norm_sum / norm_count).float(), len(ids))


@torch.no_grad()
def lens_logits(model, vector: torch.Tensor) -> torch.Tensor:
    """[d_vocab]: a residual-stream vector read through the model's final norm and unembedding (logit lens),
    before any final logit soft-cap."""
    v = vector.to(model.device, model.dtype)[None, None]
    return model.unembed(model.ln_final(v), softcap=False)[0, 0].float()


def lens_top_tokens(model, vector: torch.Tensor, k: int = 20, bottom: bool = False) -> list[tuple[str, float]]:
    """The k tokens the vector promotes most (or demotes most, bottom=True): [(token string, probability)],
    probabilities of the softmax over the lens logits (as the toolkit reports them)."""
    logits = lens_logits(model, vector)
    probs = torch.softmax(-logits if bottom else logits, -1)
    top = torch.topk(probs, k)
    return [(model.tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices)]


def distinctive_top_tokens(model, vector: torch.Tensor, control: torch.Tensor, k: int = 20) -> list[tuple[str, float]]:
    """`lens_top_tokens(model, vector, k)` without the tokens that are also among the top k of `control`.

    vector, control: [d_model], the same layer's mean difference of this fine-tune and of another fine-tune of the
    same base on the same texts. Why: fine-tunes of one model share noise tokens in the lens (measured on the
    planted pair: "ighthouse" also ranks 7th-8th at layers 24-26 for the thinking fine-tune, docs/diffing.md), so
    a token both lenses show says little about what this fine-tune learned. A zero control excludes nothing."""
    top = lens_top_tokens(model, vector, k)
    if not control.norm() > 0:
        return top
    shared = {t for t, _ in lens_top_tokens(model, control, k)}
    return [(t, p) for t, p in top if t not in shared]


def steering_vector(diff: ActivationDiff, layer: int, position: int | None = None) -> torch.Tensor:
    """[d_model]: the mean difference at `layer` (pooled, or one position), rescaled to the base model's mean
    residual norm at that layer, so `scale` in add_direction is in units of a typical activation."""
    if not 0 <= layer < diff.mean_diff.shape[0]:
        raise ConfigError(f"layer {layer} out of range: pick 0..{diff.mean_diff.shape[0] - 1}")
    v = diff.pooled(layer) if position is None else diff.mean_diff[layer, position]
    n = v.norm()
    if n == 0:
        raise ConfigError(
            f"the activation difference at layer {layer} is zero (the layer is unchanged): pick a later layer"
        )
    return v / n * diff.base_norm[layer]


@torch.no_grad()
def steered_samples(
    model,
    prompts: Sequence[str],
    layer: int,
    vector: torch.Tensor | None,
    *,
    scale: float = 1.0,
    n_samples: int = 32,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    seed: int = 0,
    chat: bool = True,
    on_progress: OnProgress | None = None,
) -> list[str]:
    """`n_samples` sampled continuations (prompts cycled), with `scale * vector` added to
    blocks.{layer}.hook_resid_post at every position (vector None: unsteered). Seeded."""
    from thoughtlens.model.interventions import add_direction

    texts = [model.apply_chat_template(p) if chat else p for p in prompts]
    inputs = [texts[i % len(texts)] for i in range(n_samples)]
    torch.manual_seed(seed)
    tracker = Tracker(on_progress, "steer", "steered samples", total=n_samples)
    out: list[str] = []
    for start in range(0, n_samples, 16):
        chunk = inputs[start : start + 16]
        if vector is None:
            gen = model.generate(chunk, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature)
        else:
            with add_direction(model, f"blocks.{layer}.hook_resid_post", vector, scale=scale):
                gen = model.generate(chunk, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature)
        out += [gen] if isinstance(gen, str) else list(gen)
        tracker.advance(len(chunk))
    return out


def degenerate(text: str, min_distinct: float = 0.5) -> bool:
    """Whether a sample has collapsed into repetition: fewer than `min_distinct` of its words are distinct
    ("Obs Obs Obs ...", "lighthouse lighthouse ..."). A steering scale is only worth reporting where most samples
    are not degenerate: a strong enough push makes any model repeat the pushed token."""
    words = text.split()
    return bool(words) and len(set(words)) < min_distinct * len(words)
