"""Matryoshka BatchTopK SAE (Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka
Sparse Autoencoders"; code bartbussmann/matryoshka_sae), as SAELens's
MatryoshkaBatchTopKTrainingSAE (`sae_lens/saes/matryoshka_batchtopk_sae.py`).

Latents are ordered; each prefix of widths `matryoshka_widths` (the last = d_sae) must reconstruct the
input on its own, so the loss sums the reconstruction losses of every prefix. General features
gather in the early latents and absorption drops. Inference and saving: as BatchTopK (a JumpReLU).
"""

from __future__ import annotations

import torch

from thoughtlens.errors import SAEError
from thoughtlens.sae.base import SAEConfig, register_architecture
from thoughtlens.sae.batchtopk import BatchTopKSAE
from thoughtlens.sae.topk import Selection, normalized_mse


def default_widths(d_sae: int) -> list[int]:
    """d_sae/16, d_sae/4, d_sae: three nested levels (a common choice in the paper's experiments)."""
    return [max(1, d_sae // 16), max(2, d_sae // 4), d_sae]


@register_architecture("matryoshka_batchtopk")
class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        super().check_config(cfg)
        widths = cfg.matryoshka_widths
        if widths is None:
            return
        if not widths or widths[-1] != cfg.d_sae or any(a >= b for a, b in zip(widths, widths[1:])) or widths[0] <= 0:
            raise SAEError(f"matryoshka_widths must be strictly increasing and end at d_sae={cfg.d_sae}, got {widths}")

    @property
    def widths(self) -> list[int]:
        return self.cfg.matryoshka_widths or default_widths(self.cfg.d_sae)

    def reconstruction_loss(self, sel: Selection, target: torch.Tensor) -> torch.Tensor:
        """Sum over prefixes of the normalised MSE of the reconstruction from latents [0, w) only
        (the outer prefix is the full reconstruction)."""
        loss = normalized_mse(sel.recon, target)
        contrib = sel.vals[:, None] * self.W_dec[sel.cols]  # [n, d_out]
        for w in self.widths[:-1]:
            keep = sel.cols < w
            partial = self.b_dec + torch.zeros_like(sel.recon).index_add(0, sel.rows[keep], contrib[keep])
            loss = loss + normalized_mse(partial, target)
        return loss
