"""Synthetic activations with known sparse features, for checking that an SAE recovers them
(after SynthSAEBench in SAELens: ground-truth feature directions, sparse independent firing,
positive magnitudes). An SAE is judged by the mean over true features of the best cosine similarity
with any learned decoder row ("mean max cosine", MMCS; Sharkey et al. 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SyntheticFeatures:
    """directions: [n_features, d] unit rows; probs: [n_features] firing probability of each."""

    directions: torch.Tensor
    probs: torch.Tensor
    magnitude_std: float = 0.1
    noise_std: float = 0.0

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [n, d], true coefficients [n, n_features]): x = coeffs @ directions + noise."""
        fires = torch.rand(n, len(self.probs), generator=generator) < self.probs
        mags = (1.0 + self.magnitude_std * torch.randn(n, len(self.probs), generator=generator)).abs()
        coeffs = fires * mags
        x = coeffs @ self.directions
        if self.noise_std:
            x = x + self.noise_std * torch.randn(x.shape, generator=generator)
        return x, coeffs


def make_features(
    d: int, n_features: int, *, mean_active: float = 3.0, zipf: float = 0.5, seed: int = 0
) -> SyntheticFeatures:
    """Random unit directions in R^d; firing probabilities falling as rank^-zipf, scaled so that
    `mean_active` features fire per sample on average."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_features, d, generator=g)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    probs = torch.arange(1, n_features + 1, dtype=torch.float32).pow(-zipf)
    probs = (probs * mean_active / probs.sum()).clamp(max=1.0)
    return SyntheticFeatures(directions, probs)


def mean_max_cosine(true_directions: torch.Tensor, learned: torch.Tensor) -> float:
    """Mean over true directions [n, d] of the max cosine with any learned row [m, d]."""
    t = true_directions / true_directions.norm(dim=-1, keepdim=True)
    u = learned / learned.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return float((t @ u.T).max(dim=1).values.mean())
