"""ReLU SAE with an L1 penalty ("standard"): the sparse autoencoder of Bricken et al. (2023) with
Anthropic's April 2024 update, as SAELens trains it (`sae_lens/saes/standard_sae.py`,
StandardTrainingSAE.calculate_aux_loss): the L1 term weights each latent by its decoder row's norm,
so the decoder needs no norm constraint, and the coefficient warms up linearly.
"""

from __future__ import annotations

from thoughtlens.sae.base import SAE, TrainStep, register_architecture


@register_architecture("standard")
class StandardSAE(SAE):
    """f = relu((x - b_dec) @ W_enc + b_enc). Loss = ||x - x_hat||^2 + l1 * sum_i f_i ||W_dec[i]||."""

    def training_loss(self, x, target, dead_mask, sparsity_scale) -> TrainStep:
        latents = self.encode(x)
        recon = self.decode(latents)
        mse = (recon - target).pow(2).sum(-1).mean()
        l1 = (latents * self.W_dec.norm(dim=-1)).sum(-1).mean()
        loss = mse + self.cfg.l1_coefficient * sparsity_scale * l1
        return TrainStep(loss, {"mse": float(mse.detach()), "l1": float(l1.detach())}, latents, recon)
