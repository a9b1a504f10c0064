"""Activation patching and attribution patching (AtP, AtP*) against hand-written hooks and exact toys."""

from __future__ import annotations

import numerics
import numpy as np
import pytest
import torch
from tiny_models import random_tokens, tiny_hf

from thoughtlens import HookedModel
from thoughtlens.circuits import (
    activation_patching,
    attribution_patching,
    kl_metric,
    logit_diff_metric,
    prob_metric,
)
from thoughtlens.errors import ThoughtlensError

METRIC = logit_diff_metric(correct=[3, 5], wrong=[7, 11])


@pytest.fixture(scope="module")
def model():
    return HookedModel(tiny_hf("llama"))


@pytest.fixture(scope="module")
def linear_toy():
    """Everything after the last layer's attention is linear: no final norm, last MLP zeroed."""
    hf = tiny_hf("llama")
    hf.model.norm = torch.nn.Identity()
    with torch.no_grad():
        hf.model.layers[-1].mlp.down_proj.weight.zero_()
    return HookedModel(hf)


def pair():
    return random_tokens(seed=1), random_tokens(seed=2)


def _metric_with_hook(model, tokens, name, fn):
    with torch.no_grad():
        return float(METRIC(model.run_with_hooks(tokens, [(name, fn)])))


def _metric_scale(model) -> float:
    """The size at which a change of METRIC rounds: it is a mean of two logits minus two others, so a difference
    of two of them is at most four times the largest logit of the pair's runs."""
    with torch.no_grad():
        return 4 * numerics.magnitude(*(model(t) for t in pair()))


def _assert_metric_close(got, want, model) -> None:
    """Metric changes computed two ways in float32: rounding at the metric's scale, through the model's layers."""
    got, want = np.array(got, dtype=np.float64), np.array(want, dtype=np.float64)  # (pandas hands out read-only views)
    numerics.assert_close(got, want, dtype=torch.float32, depth=model.cfg.n_layers, scale=_metric_scale(model))


def test_patching_one_residual_node_equals_a_hand_written_hook(model):
    clean, corrupt = pair()
    df = activation_patching(model, clean, corrupt, METRIC, site="resid_pre")
    _, cache = model.run_with_cache(clean, names_filter="blocks.1.hook_resid_pre")

    def patch(t, hook):
        t = t.clone()
        t[:, 3] = cache["blocks.1.hook_resid_pre"][:, 3]
        return t

    with torch.no_grad():
        expected = _metric_with_hook(model, corrupt, "blocks.1.hook_resid_pre", patch) - float(METRIC(model(corrupt)))
    got = df.query("layer == 1 and pos == 3")["value"].item()
    _assert_metric_close(got, expected, model)
    assert len(df) == model.cfg.n_layers * clean.shape[1]


def test_noising_one_head_equals_a_hand_written_hook_and_batching_does_not_matter(model):
    clean, corrupt = pair()
    df = activation_patching(model, clean, corrupt, METRIC, site="z", direction="noise")
    one_by_one = activation_patching(model, clean, corrupt, METRIC, site="z", direction="noise", batch_size=1)
    _, cache = model.run_with_cache(corrupt, names_filter="blocks.2.attn.hook_z")

    def patch(z, hook):
        z = z.clone()
        z[:, 5, 1] = cache["blocks.2.attn.hook_z"][:, 5, 1]
        return z

    with torch.no_grad():
        expected = _metric_with_hook(model, clean, "blocks.2.attn.hook_z", patch) - float(METRIC(model(clean)))
    _assert_metric_close(df.query("layer == 2 and head == 1 and pos == 5")["value"].item(), expected, model)
    _assert_metric_close(df["value"].values, one_by_one["value"].values, model)
    assert list(df.columns) == ["layer", "head", "pos", "value"]


def test_patching_the_whole_first_residual_moves_the_metric_to_the_source_run(model):
    clean, corrupt = pair()
    with torch.no_grad():
        clean_value, corrupt_value = float(METRIC(model(clean))), float(METRIC(model(corrupt)))
    for direction, expected in (("denoise", clean_value - corrupt_value), ("noise", corrupt_value - clean_value)):
        df = activation_patching(
            model, clean, corrupt, METRIC, site="resid_pre", per_position=False, direction=direction, layers=[0]
        )
        _assert_metric_close(df["value"].item(), expected, model)
        metrics = [df.attrs["clean_metric"], df.attrs["corrupt_metric"]]
        _assert_metric_close(metrics, [clean_value, corrupt_value], model)


@pytest.mark.parametrize("site", ["z", "attn_out", "mlp_out", "resid_post", "v"])
def test_atp_equals_activation_patching_where_the_metric_is_linear(linear_toy, site):
    clean, corrupt = pair()
    last = [linear_toy.cfg.n_layers - 1]
    exact = activation_patching(linear_toy, clean, corrupt, METRIC, site=site, layers=last)
    atp = attribution_patching(linear_toy, clean, corrupt, METRIC, site=site, layers=last)
    assert list(atp.columns) == list(exact.columns)
    _assert_metric_close(atp["value"].values, exact["value"].values, linear_toy)


@pytest.mark.parametrize("site", ["q", "k"])
def test_atp_star_qk_fix_is_exact_when_only_the_softmax_is_nonlinear(linear_toy, site):
    clean, corrupt = pair()
    last = [linear_toy.cfg.n_layers - 1]
    exact = activation_patching(linear_toy, clean, corrupt, METRIC, site=site, layers=last)
    star = attribution_patching(linear_toy, clean, corrupt, METRIC, site=site, layers=last, method="atp*")
    plain = attribution_patching(linear_toy, clean, corrupt, METRIC, site=site, layers=last)
    # GradDrop on last-layer nodes: dropping an earlier layer leaves the gradient, dropping their own
    # layer zeroes it, so AtP* = |exact effect| here.
    _assert_metric_close(star["value"].values, exact["value"].abs().values, linear_toy)
    # plain AtP linearises the softmax: not exact, by far more than the rounding allowed above
    bound = numerics.tol(torch.float32, _metric_scale(linear_toy), depth=linear_toy.cfg.n_layers)
    assert (plain["value"] - exact["value"]).abs().max() > 10 * bound


def test_atp_star_grad_drop_is_a_magnitude_that_matches_atp_on_the_last_layer(model):
    clean, corrupt = pair()
    atp = attribution_patching(model, clean, corrupt, METRIC, site="z")
    star = attribution_patching(model, clean, corrupt, METRIC, site="z", method="atp*")
    assert (star["value"] >= 0).all()
    last = atp["layer"] == model.cfg.n_layers - 1
    _assert_metric_close(star[last]["value"].values, atp[last]["value"].abs().values, model)


def test_metrics_against_hand_computation(model):
    tokens = random_tokens()
    with torch.no_grad():
        logits = model(tokens)
    probs = logits[:, -1].softmax(-1)
    # probabilities (<= 1) move by p times their logits' rounding: at most the logits' size, one softmax deep
    numerics.assert_close(
        float(prob_metric([3, 5])(logits)),
        (probs[0, 3] + probs[1, 5]) / 2,
        dtype=torch.float32,
        scale=numerics.magnitude(logits[:, -1]),
    )
    assert float(kl_metric(logits)(logits)) == 0.0  # the same log-probabilities on both sides: every term is p * 0
    assert float(kl_metric(logits)(logits.flip(0))) > 0


def test_prompts_of_different_lengths_are_a_clear_error(model):
    clean, corrupt = random_tokens(pos=12), random_tokens(pos=13)
    for fn in (activation_patching, attribution_patching):
        with pytest.raises(ThoughtlensError, match="same token count"):
            fn(model, clean, corrupt, METRIC)


def test_non_scalar_metric_is_a_clear_error(model):
    clean, corrupt = pair()
    per_prompt = lambda logits: logits[:, -1, 3]  # noqa: E731 - a [batch] result, not reduced
    for fn in (activation_patching, attribution_patching):
        with pytest.raises(ThoughtlensError, match="not a scalar"):
            fn(model, clean, corrupt, per_prompt)


@pytest.mark.parametrize(
    "kw, match",
    [({"site": "hook_x"}, "unknown site"), ({"direction": "up"}, "denoise"), ({"layers": [7]}, "out of range")],
)
def test_bad_arguments_are_clear_errors(model, kw, match):
    clean, corrupt = pair()
    with pytest.raises(ThoughtlensError, match=match):
        activation_patching(model, clean, corrupt, METRIC, **kw)


def test_bad_method_is_a_clear_error(model):
    clean, corrupt = pair()
    with pytest.raises(ThoughtlensError, match="atp"):
        attribution_patching(model, clean, corrupt, METRIC, method="magic")


def test_atp_star_qk_fix_for_whole_sequence_keys_is_exact_on_the_linear_toy(linear_toy):
    """site "k", per_position=False patches a head's keys at every position at once: the pattern is
    recomputed with all of them (summing single-key estimates was off by 0.0032 on a 0.0081 effect)."""
    clean, corrupt = pair()
    last = [linear_toy.cfg.n_layers - 1]
    exact = activation_patching(linear_toy, clean, corrupt, METRIC, site="k", per_position=False, layers=last)
    star = attribution_patching(
        linear_toy, clean, corrupt, METRIC, site="k", per_position=False, layers=last, method="atp*"
    )
    _assert_metric_close(star["value"].values, exact["value"].abs().values, linear_toy)
