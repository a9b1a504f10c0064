"""Steering: add a direction while the model generates, and measure the effect over many rollouts.

    result = steering_effect(model, prompts, direction, hook="blocks.12.hook_resid_post", scales=[-4, 0, 4],
                             outcome=lambda text: is_refusal(text), n_rollouts=64)
    result.rows[-1].effect, result.rows[-1].ci, result.rows[-1].perplexity_ratio

The effect is measured the way the anchors job measures importance: as a change in the distribution of
outcomes over N sampled rollouts, here the mean of `outcome(text)` (a 0/1 classifier such as a
labeller's category rate or a phrase matcher, or any number), steered minus unsteered, with a two-stage
bootstrap CI over prompts then rollouts (`thoughtlens.stats.hierarchical_bootstrap_diff`).
Fluency cost: the perplexity of the steered continuations under the *unsteered* model, divided by the
perplexity of the unsteered continuations under the same model (1.0 = no cost).
Rollouts come from the HF sampler (`thoughtlens.sample.hf.HFSampler`) with the direction added through its
`intervention` argument, so a steered model is resampled exactly like any other (per-rollout seeds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from thoughtlens.errors import ConfigError
from thoughtlens.model.interventions import add_direction
from thoughtlens.stats import hierarchical_bootstrap_diff

Outcome = Callable[[str], float]


@dataclass
class SteeringRow:
    scale: float
    rate: float  # mean outcome over all rollouts at this scale
    effect: float  # rate - rate at scale 0 (mean of per-prompt means)
    ci: tuple[float, float]
    perplexity: float  # of these continuations under the unsteered model
    perplexity_ratio: float  # perplexity / perplexity of the unsteered continuations
    n_rollouts: int


@dataclass
class SteeringResult:
    hook: str
    rows: list[SteeringRow]
    texts: dict[float, list[list[str]]]  # scale -> per prompt -> rollouts

    def to_dict(self) -> dict:
        return {"hook": self.hook, "rows": [asdict(r) for r in self.rows]}


@torch.no_grad()
def continuation_nll(model, prompt: str, continuations: Sequence[str]) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of each continuation's tokens after `prompt`, and their count."""
    p_ids = model.to_tokens(prompt)[0]
    total, count = 0.0, 0
    for c in continuations:
        c_ids = model.to_tokens(c, prepend_bos=False)[0] if c else p_ids[:0]
        if len(c_ids) == 0:
            continue
        ids = torch.cat([p_ids, c_ids])[None]
        logp = torch.log_softmax(model(ids)[0, len(p_ids) - 1 : -1].float(), dim=-1)
        total -= float(logp.gather(-1, c_ids[:, None].to(logp.device)).sum())
        count += len(c_ids)
    return total, count


def steering_effect(
    model,
    prompts: Sequence[str],
    direction,
    *,
    hook: str,
    scales: Sequence[float],
    outcome: Outcome,
    n_rollouts: int = 16,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    top_p: float = 0.95,
    seed: int = 0,
    prompt_positions_too: bool = True,
    batch_size: int = 16,
    on_progress: Callable[[int], None] | None = None,
    baseline: SteeringResult | None = None,
) -> SteeringResult:
    """Outcome rate, effect vs scale 0 (with CI) and fluency cost, per scale.

    prompts: model input text (chat template applied). direction: [width of hook]. hook: where to add it
    (a name, a short name for every layer, or a glob). prompt_positions_too: add at every position (the
    prompt included, as Arditi et al.'s activation addition); False adds only at generated tokens.
    on_progress(1) after each (scale, prompt). baseline: an earlier result on the same prompts with the same
    sampling settings whose scale-0 rollouts are reused (scale 0 does not depend on the direction), e.g. to
    compare several directions against one unsteered sample.
    """
    from thoughtlens.sample.base import SampleRequest, SamplingParams
    from thoughtlens.sample.hf import HFSampler

    if not prompts:
        raise ConfigError("no prompts: pass at least one")
    if n_rollouts < 2:
        raise ConfigError(f"n_rollouts must be >= 2 to estimate a rate, got {n_rollouts}")
    scales = sorted({float(s) for s in [0.0, *scales]})
    with add_direction(model, hook, direction, 0.0):  # one-line errors (unknown hook, wrong width) before sampling
        pass
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    texts: dict[float, list[list[str]]] = {}
    for s in scales:
        if s == 0.0 and baseline is not None:
            if 0.0 not in baseline.texts or len(baseline.texts[0.0]) != len(prompts):
                raise ConfigError(
                    "the baseline result has no scale-0 rollouts for these prompts: pass one computed on them"
                )
            texts[s] = baseline.texts[0.0]
            continue
        texts[s] = []
        for prompt in prompts:
            n_prompt = model.to_tokens(prompt).shape[1]
            positions = None if prompt_positions_too else slice(n_prompt, None)
            sampler = HFSampler(
                model,
                batch_size=batch_size,
                intervention=lambda: add_direction(model, hook, direction, s, positions=positions),
            )
            done = sampler.sample([SampleRequest(prompt, tuple(range(n_rollouts)))], params)
            texts[s].append([c.text for c in sorted(done, key=lambda c: c.sample_index)])
            if on_progress is not None:
                on_progress(1)
    scores = {s: [np.array([float(outcome(t)) for t in per], dtype=float) for per in texts[s]] for s in scales}
    nll = {}
    for s in scales:
        tot, cnt = 0.0, 0
        for prompt, per in zip(prompts, texts[s]):
            a, b = continuation_nll(model, prompt, per)
            tot, cnt = tot + a, cnt + b
        nll[s] = math.exp(tot / cnt) if cnt else math.nan
    rows = []
    for s in scales:
        est = hierarchical_bootstrap_diff(scores[s], scores[0.0], seed=seed)
        rows.append(
            SteeringRow(
                s,
                float(np.mean(np.concatenate(scores[s]))),
                est.estimate,
                (est.ci_low, est.ci_high),
                nll[s],
                nll[s] / nll[0.0] if nll[0.0] else math.nan,
                n_rollouts * len(prompts),
            )
        )
    return SteeringResult(hook, rows, texts)
