"""Patching, DLA and the residual decomposition agree across dtypes up to each dtype's rounding.

A patch that copies an activation equal to the one already there changes nothing, so its effect is exactly
0.0 in every dtype: the baseline and the patched runs share one batch shape (rounding may depend on it),
and source and target runs go through the same hooks. Tolerances elsewhere come from `numerics`.
"""

from __future__ import annotations

import math

import numerics
import pytest
import torch
from tiny_models import random_tokens, tiny_hf

from thoughtlens import HookedModel
from thoughtlens.circuits import activation_patching, attribution_patching, decompose_resid, dla, logit_diff_metric

DTYPES = [torch.float32, torch.bfloat16]
DIFF_POS = 6  # clean and corrupt differ here only
METRIC = logit_diff_metric(correct=[3, 5], wrong=[7, 11])


@pytest.fixture(scope="module", params=DTYPES, ids=["float32", "bfloat16"])
def model(request):
    return HookedModel(tiny_hf("llama").to(request.param))


def pair():
    clean = random_tokens(seed=1)  # [2, 12]
    corrupt = clean.clone()
    corrupt[:, DIFF_POS] = (clean[:, DIFF_POS] + 1) % 97
    return clean, corrupt


def _no_op_values(df, site: str):
    """Rows whose source and target activations are equal: every layer before the first differing position
    (a causal model sees the same prefix), and for resid_pre layer 0 wherever the tokens agree."""
    rows = df["pos"] < DIFF_POS
    if site == "resid_pre":
        rows |= (df["layer"] == 0) & (df["pos"] != DIFF_POS)
    return df[rows]


def shape_dependent_rounding(t, hook):
    """What a kernel that picks its blocking by batch size does (bf16 on some CPUs, most GPU kernels): the
    same row rounds differently in batches of different sizes. Applied to every attention output."""
    return t * (1 + numerics.eps(t.dtype) * (t.shape[0] % 5))


@pytest.mark.parametrize("site", ["resid_pre", "z", "mlp_out"])
def test_a_patch_that_changes_nothing_is_exactly_zero(model, site):
    clean, corrupt = pair()
    df = activation_patching(model, clean, corrupt, METRIC, site=site, batch_size=5)  # a short last pass too
    noop = _no_op_values(df, site)
    assert len(noop) and (noop["value"] == 0.0).all(), noop[noop["value"] != 0.0].head()
    assert (df[df["pos"] == DIFF_POS]["value"] != 0.0).any()  # the real patch does something


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_no_op_patches_stay_zero_when_rounding_depends_on_the_batch_shape(model, direction):
    clean, corrupt = pair()
    with model.hooks([("blocks.*.hook_attn_out", shape_dependent_rounding)]):
        df = activation_patching(model, clean, corrupt, METRIC, site="resid_pre", direction=direction, batch_size=3)
        with torch.no_grad():
            clean_value, corrupt_value = float(METRIC(model(clean))), float(METRIC(model(corrupt)))
    noop = _no_op_values(df, "resid_pre")
    assert (noop["value"] == 0.0).all(), noop[noop["value"] != 0.0].head()
    # the recorded metrics are the unpatched runs, up to the rounding the batch shape brings
    scale = max(abs(clean_value), abs(corrupt_value), 1.0)
    numerics.assert_close(
        df.attrs["clean_metric"], clean_value, dtype=model.dtype, scale=scale, depth=model.cfg.n_layers
    )
    numerics.assert_close(
        df.attrs["corrupt_metric"], corrupt_value, dtype=model.dtype, scale=scale, depth=model.cfg.n_layers
    )


@pytest.mark.parametrize(
    "site,method", [("resid_pre", "atp"), ("z", "atp"), ("z", "atp*"), ("q", "atp*"), ("k", "atp*"), ("k", "atp")]
)
def test_attribution_of_a_patch_that_changes_nothing_is_exactly_zero(model, site, method):
    clean, corrupt = pair()
    df = attribution_patching(model, clean, corrupt, METRIC, site=site, method=method)
    noop = _no_op_values(df, site)
    assert len(noop) and (noop["value"] == 0.0).all(), noop[noop["value"] != 0.0].head()
    assert (df["value"] != 0.0).any()


def test_dla_sums_to_the_logit_difference_in_every_dtype(model):
    tokens = random_tokens(seed=3)
    df = dla(model, tokens, correct=[3, 5], wrong=[7, 11])
    # Both sides read the same forward pass; they differ by the rounding of the final norm and unembedding in
    # the model's dtype, and of the residual stream's sums, on values of the size of the terms.
    scale = float(df["value"].abs().sum()) + abs(df.attrs["logit"])
    numerics.assert_close(
        df["value"].sum(),
        df.attrs["logit"],
        dtype=model.dtype,
        scale=scale,
        depth=2 * model.cfg.n_layers + 1,
        msg="sum of DLA vs logit difference",
    )


def test_dla_in_bfloat16_matches_float32_up_to_bfloat16_rounding():
    hf = tiny_hf("llama")
    tokens = random_tokens(seed=3)
    fp32 = dla(HookedModel(hf), tokens, correct=[3, 5], wrong=[7, 11])
    bf16 = dla(HookedModel(tiny_hf("llama").to(torch.bfloat16)), tokens, correct=[3, 5], wrong=[7, 11])
    assert list(fp32["component"]) == list(bf16["component"])
    scale = float(fp32["value"].abs().sum())
    numerics.assert_close(
        torch.tensor(bf16["value"].tolist()),
        torch.tensor(fp32["value"].tolist()),
        dtype=torch.bfloat16,
        scale=scale,
        depth=2 * hf.config.num_hidden_layers + 1,
    )


def decomposition_error_and_bound(model, tokens, by_head: bool):
    """|sum of parts - residual stream| per element, and the bound it must stay under.

    The model adds its 2L + 1 parts (embeddings, each layer's attention and MLP output) to the stream one at
    a time and rounds each sum to its dtype: an error of at most eps/2 times the size of that running sum.
    Split by head, each head's part hook_z @ W_O[h] is recomputed in fp32 where the model computed the
    attention output as one sum over heads (reassociated, then rounded to its dtype): rounding of the order of
    eps times the parts' sizes. So per element

        |sum(parts) - stream| <= eps(dtype) * (sum_k |r_k| + sum_c |part_c|)

    with r_k the stream after addition k; the test allows SAFETY_DECOMP times that for the constants. The bound
    is per element: where the stream carries a large value through many layers (the attention sink at
    position 0), it is large too.
    """
    n = model.cfg.n_layers
    comps, _ = decompose_resid(model, tokens, by_head=by_head)
    layer_parts, _ = decompose_resid(model, tokens, by_head=False)  # the tensors the model added, in order
    _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{n - 1}.hook_resid_post")
    err = (comps.double().sum(0) - cache[f"blocks.{n - 1}.hook_resid_post"].double()).abs()
    running = layer_parts.double().cumsum(0)[1:].abs().sum(0)
    bound = SAFETY_DECOMP * numerics.eps(model.dtype) * (running + comps.double().abs().sum(0))
    return err, bound


SAFETY_DECOMP = 2.0  # the bound is a worst case (every rounding maximal, all of one sign), not a statistical estimate


@pytest.mark.parametrize("by_head", [True, False])
def test_decompose_resid_sums_to_the_stream_within_the_dtype_bound(model, by_head):
    err, bound = decomposition_error_and_bound(model, random_tokens(seed=4), by_head)
    assert (err <= bound).all(), f"max error {float(err.max()):.3g}, worst error/bound {float((err / bound).max()):.3g}"


@pytest.mark.parametrize("arch", ["gpt2", "qwen3", "gpt_neox"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "bfloat16"])
def test_decompose_resid_bound_holds_on_other_architectures(arch, dtype):
    other = HookedModel(tiny_hf(arch).to(dtype))
    for by_head in (True, False):
        err, bound = decomposition_error_and_bound(other, random_tokens(seed=4), by_head)
        assert (err <= bound).all(), f"{arch} by_head={by_head}: worst error/bound {float((err / bound).max()):.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "bfloat16"])
def test_bundled_model_ioi_no_op_patches_and_decomposition(dtype):
    """The bundled model on IOI: exact zeros at no-op positions of layer 0, and the residual decomposition
    within its bound at every position, the attention sink at position 0 included (where parts of about 2e4
    cancel to a stream of about 2.6e3, so the error is largest there)."""
    import thoughtlens
    from thoughtlens.circuits.ioi import ioi_prompts
    from thoughtlens.errors import ModelNotFoundError

    try:
        model = thoughtlens.load(dtype=dtype)
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    ioi = ioi_prompts(model, n=4)
    same = (ioi.clean == ioi.corrupt).all(0)
    df = activation_patching(model, ioi.clean, ioi.corrupt, ioi.metric(), site="resid_pre", layers=[0])
    values = torch.tensor(df["value"].to_numpy())
    assert (values[same] == 0.0).all(), values
    assert (values[~same] != 0.0).all()
    prompt = "When Mary and John went to the store, John gave a drink to"
    err, bound = decomposition_error_and_bound(model, prompt, by_head=True)
    worst = float((err / bound).max())
    print(
        f"{dtype}: max error {float(err.max()):.3g} (position 0: {float(err[:, 0].max()):.3g}, elsewhere "
        f"{float(err[:, 1:].max()):.3g}), bound there {float(bound.flatten()[err.argmax()]):.3g}, "
        f"error/bound at most {worst:.3g}"
    )
    assert worst <= 1.0
    assert math.isfinite(worst)
