"""Grokking: a committed grokked checkpoint (p = 113, float16, 0.45 MB) checked with independent computations
(a full-sequence forward, numpy's FFT, least-squares restricted logits), and a short training run."""

from __future__ import annotations

import math
from pathlib import Path

import numerics
import numpy as np
import pytest
import torch

from thoughtlens.errors import ThoughtlensError
from thoughtlens.train.grokking import (
    GrokkingConfig,
    OneLayerTransformer,
    gini,
    grokking_measures,
    key_frequencies,
    load_checkpoint,
    modular_data,
    progress_measures,
    train_grokking,
)
from thoughtlens.train.trainer import log_spaced_steps

CHECKPOINT = Path(__file__).parent / "data" / "grokking_p113_fp16"


@pytest.fixture(scope="module")
def grokked():
    return load_checkpoint(CHECKPOINT)


def full_forward(m: OneLayerTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The paper's formulation: every position, causal attention, MLP everywhere; logits at the last position."""
    resid = m.W_E[tokens] + m.W_pos
    q, k, v = (torch.einsum("bpd,hde->bhpe", resid, w) for w in (m.W_Q, m.W_K, m.W_V))
    scores = q @ k.transpose(-1, -2) / math.sqrt(m.d_head)
    scores = scores.masked_fill(torch.triu(torch.ones(3, 3, dtype=torch.bool), 1), float("-inf"))
    z = scores.softmax(-1) @ v  # [batch, head, pos, d_head]
    resid = resid + torch.einsum("bhpe,hed->bpd", z, m.W_O)
    resid = resid + torch.relu(resid @ m.W_in + m.b_in) @ m.W_out + m.b_out
    return (resid @ m.W_U)[:, -1]


def all_pairs(p: int):
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    tokens = torch.tensor(np.stack([a.ravel(), b.ravel(), np.full(p * p, p)], 1))
    return tokens, torch.tensor((a.ravel() + b.ravel()) % p)


def fft_shares(m: OneLayerTransformer) -> np.ndarray:
    """Share of the number embeddings' power per frequency 1..p//2, from numpy's FFT over the token axis."""
    p = m.W_U.shape[1]
    spectrum = np.abs(np.fft.rfft(m.W_E[:p].detach().double().numpy(), axis=0)) ** 2  # [p//2 + 1, d_model]
    power = spectrum[1:].sum(-1)
    return power / power.sum()


@pytest.mark.slow
@torch.no_grad()
def test_grokked_checkpoint_computes_modular_addition(grokked):
    tokens, labels = all_pairs(113)
    logits = grokked(tokens)
    assert logits.dtype == torch.float32
    # two float32 formulations of one layer (attention, MLP, unembedding), at the logits' scale
    numerics.assert_close(logits, full_forward(grokked, tokens), dtype=torch.float32, depth=3)
    assert (logits.argmax(-1) == labels).double().mean() >= 0.99  # train and test pairs alike


def test_embedding_is_sparse_in_the_fourier_basis(grokked):
    shares = fft_shares(grokked)
    top = np.sort(shares)[::-1]
    assert top[:5].sum() > 0.6  # a few key frequencies hold most of the power
    torch.manual_seed(0)
    assert np.sort(fft_shares(OneLayerTransformer(GrokkingConfig())))[::-1][:5].sum() < 0.2  # untrained: spread
    expected = {f + 1 for f in np.flatnonzero(shares >= 0.04)}
    assert set(key_frequencies(grokked)) == expected and len(expected) >= 2
    print("key frequencies:", key_frequencies(grokked))


@torch.no_grad()
def test_restricted_and_excluded_loss_against_least_squares(grokked):
    cfg = grokked.config
    data = modular_data(cfg)
    freqs = key_frequencies(grokked)
    measures = progress_measures(grokked, data, freqs)
    logits = grokked(data.tokens).double().numpy()
    a, b = data.tokens[:, 0].numpy(), data.tokens[:, 1].numpy()
    cols = [np.ones(len(a))]
    for f in freqs:
        w = 2 * np.pi * f * (a + b) / cfg.p
        cols += [np.cos(w), np.sin(w)]
    X = np.stack(cols, 1)
    fitted = X @ np.linalg.lstsq(X, logits, rcond=None)[0]  # projection onto span{1, cos, sin(w_k(a+b))}

    def ce(lg, idx):
        lg = torch.tensor(lg[idx])
        return float(torch.nn.functional.cross_entropy(lg, data.labels[torch.as_tensor(idx)].long()))

    everything, train = np.arange(len(a)), np.flatnonzero(data.is_train.numpy())
    # float64 on both sides (projection onto the Fourier directions vs least squares, then the cross-entropy):
    # rounding at the logits' scale, the projections summing over all p * p pairs
    bound = numerics.tol(torch.float64, numerics.magnitude(logits), depth=cfg.p * cfg.p)
    assert measures["restricted_loss"] == pytest.approx(ce(fitted, everything), rel=0, abs=bound)
    excluded = logits - (fitted - fitted.mean(0, keepdims=True))  # remove only the key-frequency part
    assert measures["excluded_loss"] == pytest.approx(ce(excluded, train), rel=0, abs=bound)
    # After grokking: the key frequencies alone solve the task, and without them the training data is lost.
    assert measures["restricted_loss"] < 0.05 < 1.0 < measures["excluded_loss"]
    assert measures["test_acc"] >= 0.99 and measures["train_acc"] == 1.0


def test_gini_against_mean_absolute_difference():
    x = np.array([0.1, 3.0, 0.0, 2.5, 7.0])
    mad = np.abs(x[:, None] - x[None, :]).mean()
    assert gini(x) == pytest.approx(mad / (2 * x.mean()))
    assert gini(np.ones(10)) == pytest.approx(0.0)


@pytest.mark.slow
def test_short_training_run_and_measures(tmp_path):
    cfg = GrokkingConfig(p=17, d_model=32, n_heads=4, d_mlp=64, steps=60, every=20, n_checkpoints=4, lr=3e-3)
    result = train_grokking(tmp_path / "run", cfg)
    assert result.finished and result.step == 60
    df, summary = grokking_measures(tmp_path / "run")
    assert list(df["step"]) == sorted(set(log_spaced_steps(60, 4)) | {20, 40, 60})
    assert df["train_loss"].iloc[-1] < df["train_loss"].iloc[0]
    assert summary.final["weight_norm_sq"] == pytest.approx(
        sum(float(p.double().pow(2).sum()) for p in load_checkpoint(tmp_path / "run" / "step_000060").parameters())
    )


def test_bad_input(tmp_path):
    with pytest.raises(ThoughtlensError, match="prime"):
        GrokkingConfig(p=100)
    with pytest.raises(ThoughtlensError, match="frac_train"):
        GrokkingConfig(frac_train=1.5)
    with pytest.raises(ThoughtlensError, match="not a grokking checkpoint"):
        load_checkpoint(tmp_path)
