"""Ground truth: on synthetic activations built from known sparse features, TopK and BatchTopK SAEs
recover the feature directions (mean max cosine >= 0.9), and a random dictionary does not."""

from __future__ import annotations

import contextlib

import numerics
import pytest
import torch

from thoughtlens.sae import TensorSource, TrainConfig, build_sae, train_saes
from thoughtlens.sae.synthetic import make_features, mean_max_cosine


@contextlib.contextmanager
def one_thread():
    # Tiny matmuls: a second thread only adds contention on a shared 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def test_mean_max_cosine_formula():
    true = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    learned = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -3.0]])
    # feature 0: best cos 1 (row 0); feature 1: best cos 1/sqrt(2) (row 1; row 2 is anti-aligned)
    # cosines (<= 1) from float32 norms and dot products of 2-vectors, against the exact value
    numerics.assert_close(mean_max_cosine(true, learned), (1 + 2**-0.5) / 2, dtype=torch.float32, depth=2, scale=1.0)


@pytest.mark.slow
def test_topk_and_batchtopk_recover_known_features():
    feats = make_features(32, 64, mean_active=3, seed=0)
    x, coeffs = feats.sample(60_000, torch.Generator().manual_seed(1))
    assert 2.0 < float((coeffs > 0).sum(-1).float().mean()) < 4.0  # the sparsity we asked for
    source = TensorSource(x, "synthetic", batch_size=512, seed=0)
    torch.manual_seed(0)
    saes = {a: build_sae(architecture=a, d_in=32, d_sae=128, k=4, hook_name="synthetic") for a in ("topk", "batchtopk")}
    random_mmcs = mean_max_cosine(feats.directions, saes["topk"].W_dec.detach())
    with one_thread():
        result = train_saes(saes, source, TrainConfig(total_activations=150_000, lr=3e-3, dead_window=20_000, seed=0))
    for name, sae in result.saes.items():
        mmcs = mean_max_cosine(feats.directions, sae.W_dec.detach())
        assert mmcs >= 0.9, f"{name}: mean max cosine {mmcs:.3f}"
    assert random_mmcs < 0.6  # the bar is not met by chance
