"""Evaluation metrics against independent computations: plain HF loss for CE, an explicit zero-ablation
hook, an identity SAE (FVU 0, CE recovered 1), and k-sparse probing on planted features."""

from __future__ import annotations

import numerics
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_sae_splice import identity_sae

from thoughtlens.sae.activations import token_windows
from thoughtlens.sae.evaluate import evaluate_saes, k_sparse_probe

TEXTS = [f"Problem {i}: Tom has {i} apples and buys {i + 3} more, so he has {2 * i + 3} apples." for i in range(30)]


def test_identity_sae_metrics_match_independent_computation(tiny_lm):
    hook = "blocks.0.hook_resid_post"
    sae = identity_sae(tiny_lm.cfg.d_model, hook)
    m = evaluate_saes(tiny_lm, {"id": sae}, TEXTS, context_size=16, batch_size=4, max_tokens=120)["id"]
    windows = list(token_windows(tiny_lm.tokenizer, TEXTS, 16))[: -(-m.n_tokens // 15)]
    tokens = torch.tensor(windows)
    with torch.no_grad():
        out = tiny_lm.hf_model(input_ids=tokens, labels=tokens)
        hf_loss = float(out.loss)  # HF's own mean next-token CE

        def zero_after_bos(x, hook):
            x = x.clone()
            x[:, 1:] = 0
            return x

        logits = tiny_lm.run_with_hooks(tokens, [(hook, zero_after_bos)])
        zero = float(F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()))
    assert m.n_tokens == tokens.shape[0] * 15
    # a CE is a mean of log-softmax entries (log-sum-exp minus a logit): rounding at the logits' size plus the
    # loss's own, through the model's 2 layers
    dt, depth = tiny_lm.dtype, tiny_lm.cfg.n_layers
    ce_scale = numerics.magnitude(out.logits, logits) + max(hf_loss, zero)
    numerics.assert_close(m.ce_clean, hf_loss, dtype=dt, depth=depth, scale=ce_scale)
    numerics.assert_close(m.ce_zero, zero, dtype=dt, depth=depth, scale=ce_scale)
    numerics.assert_close(m.ce_spliced, m.ce_clean, dtype=dt, depth=depth, scale=ce_scale)
    # (zero - spliced) / (zero - clean): two CEs' rounding over their gap
    ce_tol = numerics.tol(dt, ce_scale, depth=depth)
    assert abs(m.ce_loss_recovered - 1.0) <= 2 * ce_tol / abs(m.ce_zero - m.ce_clean)
    # the identity SAE reconstructs to rounding: a squared relative error
    assert m.fvu <= numerics.tol(dt, 1.0) ** 2 and m.l0 == pytest.approx(tiny_lm.cfg.d_model)
    assert m.dead_fraction == 0.0


def test_k_sparse_probe_finds_a_planted_feature():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    feats = rng.exponential(1.0, (400, 50)) * (rng.random((400, 50)) < 0.2)
    feats[:, 17] = labels * 3.0 + rng.random(400) * 0.1  # latent 17 carries the label
    acc = k_sparse_probe(feats, labels, ks=(1, 5))
    assert acc[1] > 0.97 and acc[5] > 0.97
    shuffled = k_sparse_probe(feats, rng.permutation(labels), ks=(1,))
    assert shuffled[1] < 0.7
