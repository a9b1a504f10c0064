"""TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"; code openai/sparse_autoencoder).

Inference as SAELens's TopKSAE (`sae_lens/saes/topk_sae.py`): keep the k largest pre-activations of
each token, relu them, zero the rest; `rescale_acts_by_decoder_norm` (SAELens's training option) is
honoured when loading such a checkpoint. Training follows openai/sparse_autoencoder `train.py`:
normalised MSE, unit-norm decoder rows (the trainer projects gradients and renormalises, as
`unit_norm_decoder_` / `unit_norm_decoder_grad_adjustment_`), and the AuxK loss: the top `aux_k` dead
latents reconstruct the main reconstruction's residual, weighted 1/32.
"""

from __future__ import annotations

import torch

from thoughtlens.errors import SAEError
from thoughtlens.sae.base import SAE, SAEConfig, TrainStep, register_architecture


def normalized_mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||recon - target||^2 / ||target - mean(target)||^2 over the batch (openai `normalized_mse`)."""
    return (recon - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum().clamp_min(1e-12)


def auxk_loss(sae: SAE, pre: torch.Tensor, target: torch.Tensor, recon: torch.Tensor, dead_mask: torch.Tensor | None) -> torch.Tensor:
    """AuxK (Gao et al. A.2): the top-k_aux dead latents, decoded without b_dec, predict the residual
    target - recon. Scaled down while few latents are dead (SAELens `calculate_topk_aux_loss`)."""
    if dead_mask is None or not bool(dead_mask.any()):
        return pre.new_zeros(())
    n_dead = int(dead_mask.sum())
    k_aux = sae.cfg.aux_k or sae.cfg.d_in // 2
    scale = min(n_dead / k_aux, 1.0)
    k_aux = min(k_aux, n_dead)
    masked = torch.where(dead_mask, pre, torch.full_like(pre, -torch.inf))
    vals, idx = masked.topk(k_aux, dim=-1, sorted=False)
    aux_latents = torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
    residual = (target - recon).detach()
    return scale * normalized_mse(aux_latents @ sae.W_dec, residual)


@register_architecture("topk")
class TopKSAE(SAE):
    """f = relu(topk_k(pre)); exactly at most k active latents per token."""

    unit_norm_decoder = True
    uses_dead_mask = True

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        super().check_config(cfg)
        if cfg.k is None or not 1 <= int(cfg.k) <= cfg.d_sae or int(cfg.k) != cfg.k:
            raise SAEError(f"{cfg.architecture} needs an integer k in 1..d_sae={cfg.d_sae}, got k={cfg.k}")

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        pre = super().pre_acts(x)
        if self.cfg.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        return pre

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        vals, idx = pre.topk(int(self.cfg.k), dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            latents = latents / self.W_dec.norm(dim=-1)
        return super().decode(latents)

    def training_loss(self, x, target, dead_mask, sparsity_scale) -> TrainStep:
        pre = self.pre_acts(x)
        latents = self.activation(pre)
        recon = self.decode(latents)
        main = normalized_mse(recon, target)
        aux = auxk_loss(self, pre, target, recon, dead_mask)
        loss = main + self.cfg.aux_k_coefficient * aux
        return TrainStep(loss, {"nmse": float(main.detach()), "auxk": float(aux.detach())}, latents, recon)
