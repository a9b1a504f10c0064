"""Features on chains of thought, checked against independent computations (run_with_cache + the
encoder formula, sklearn's AUROC, the unembedding product written out)."""

from __future__ import annotations

import numerics
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from thoughtlens.errors import SAEError
from thoughtlens.sae import build_sae
from thoughtlens.sae.features import (
    category_features,
    logit_effects,
    sentence_features,
    separating_features,
    top_activating_sentences,
)
from thoughtlens.trace.reasoning_trace import ReasoningTrace

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def sae(tiny_lm):
    torch.manual_seed(0)
    return build_sae(architecture="standard", d_in=tiny_lm.cfg.d_model, d_sae=48, hook_name=HOOK).eval()


def _trace():
    return ReasoningTrace.parse(
        "Q: what is 2 + 3? ", "First, 2 plus 3 makes 5. Let me double check it. Yes, the answer is 5."
    )


def test_sentence_features_match_cache_and_formula(tiny_lm, sae):
    trace = _trace()
    feats = sentence_features(tiny_lm, sae, trace)
    tok = tiny_lm.tokenizer
    ids = [tok.bos_token_id, *tok(trace.text, add_special_tokens=False)["input_ids"]]
    _, cache = tiny_lm.run_with_cache(torch.tensor([ids]), names_filter=HOOK)
    x = cache[HOOK][0]
    latents = ((x - sae.b_dec) @ sae.W_enc + sae.b_enc).clamp_min(0)
    # the encoder's rounding: its sum of |terms|, after the model's 2 layers and the encoder's difference and product
    scale = numerics.magnitude((x.abs() + sae.b_dec.abs()) @ sae.W_enc.abs() + sae.b_enc.abs())
    assert feats.shape == (len(trace.sentences), 48)
    for s, (a, b) in zip(trace.sentences, trace.token_ranges(tok)):
        piece = tok.decode(ids[a + 1 : b + 1])
        assert s.text.split()[0] in piece  # the range really covers this sentence
        numerics.assert_close(feats[s.index], latents[a + 1 : b + 1].amax(0), dtype=tiny_lm.dtype, depth=4, scale=scale)
    top = top_activating_sentences(tiny_lm, sae, [trace, trace], feature=7, n=3)
    assert list(top["activation"]) == sorted(top["activation"], reverse=True)
    numerics.assert_close(top["activation"].iloc[0], feats[:, 7].max(), dtype=tiny_lm.dtype, depth=4, scale=scale)


def test_separating_and_category_features_find_planted_latents():
    rng = np.random.default_rng(0)
    n = 60
    importance = rng.random(n)
    feats = torch.tensor(rng.exponential(1.0, (n, 20)), dtype=torch.float32)
    feats[:, 4] += torch.tensor(importance > np.median(importance), dtype=torch.float32) * 3  # planted
    table = separating_features(feats, importance, top=3)
    assert table["feature"].iloc[0] == 4
    high = importance > np.median(importance)
    a, b = feats[high, 4].numpy(), feats[~high, 4].numpy()
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    # Cohen's d from float32 means and variances of n values: relative rounding that grows with n
    want = (a.mean() - b.mean()) / pooled
    numerics.assert_close(table["cohens_d"].iloc[0], want, dtype=torch.float32, depth=n, scale=abs(want))
    # an AUROC (<= 1) of the same float32 scores (sklearn keeps their dtype), its trapezoids over n points
    numerics.assert_close(
        table["auroc"].iloc[0], roc_auc_score(high, feats[:, 4].numpy()), dtype=torch.float32, depth=n, scale=1.0
    )
    cats = np.where(np.arange(n) % 3 == 0, "plan_generation", "active_computation")
    feats[cats == "plan_generation", 9] += 5
    by_cat = category_features(feats, list(cats), top=1)
    assert by_cat.set_index("group").loc["plan_generation", "feature"] == 9
    with pytest.raises(SAEError):
        separating_features(feats, importance[:10])


def test_logit_effects_is_decoder_row_through_unembedding(tiny_lm, sae):
    df = logit_effects(tiny_lm, sae, feature=5, k=4)
    w = tiny_lm.hf_model.model.norm.weight.detach()
    effects = tiny_lm.hf_model.lm_head.weight.detach() @ (sae.W_dec[5].detach() * w)
    up = effects.topk(4)
    assert list(df[df.direction == "up"].token_id) == up.indices.tolist()
    # one product with the unembedding: rounding at its sum of |terms|
    scale = numerics.magnitude(tiny_lm.hf_model.lm_head.weight.detach().abs() @ (sae.W_dec[5].detach() * w).abs())
    numerics.assert_close(
        df[df.direction == "up"].effect.to_numpy(copy=True), up.values, dtype=tiny_lm.dtype, depth=2, scale=scale
    )
    assert list(df[df.direction == "down"].token_id) == (-effects).topk(4).indices.tolist()
    with pytest.raises(SAEError):
        logit_effects(tiny_lm, sae, feature=48)
