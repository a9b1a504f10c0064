"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead"), as SAELens trains it
(`sae_lens/saes/jumprelu_sae.py`: JumpReLU / Step autograd functions with a rectangle kernel of
bandwidth 0.05, the threshold parameterised directly and passed through relu, the "step" L0 loss).

f_i = pre_i * 1[pre_i > theta_i]. The threshold gets gradients through straight-through estimators
of the step function; the L0 penalty is sum_i 1[pre_i > theta_i]. Decoder rows are kept at unit
norm by the trainer (the paper's constraint).
"""

from __future__ import annotations

import torch

from thoughtlens.sae.base import SAE, TrainStep, register_architecture


def _rectangle(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x)


class _JumpReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, bandwidth: float):
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return x * (x > threshold).to(x)

    @staticmethod
    def backward(ctx, grad):
        x, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        x_grad = (x > threshold).to(x) * grad  # no straight-through gradient to x (as the paper)
        t_grad = (-(threshold / bw) * _rectangle((x - threshold) / bw) * grad).reshape(-1, x.shape[-1]).sum(0)
        return x_grad, t_grad, None


class _StepFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, bandwidth: float):
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x)

    @staticmethod
    def backward(ctx, grad):
        x, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        t_grad = (-(1.0 / bw) * _rectangle((x - threshold) / bw) * grad).reshape(-1, x.shape[-1]).sum(0)
        return None, t_grad, None


@register_architecture("jumprelu")
class JumpReLUSAE(SAE):
    """Inference: relu(pre) * 1[pre > relu(threshold)] (SAELens JumpReLUSAE.encode)."""

    unit_norm_decoder = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.threshold = torch.nn.Parameter(
            torch.full((cfg.d_sae,), float(cfg.jumprelu_init_threshold), dtype=self.W_enc.dtype)
        )

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre) * (pre > self.threshold.relu()).to(pre)

    def training_loss(self, x, target, dead_mask, sparsity_scale) -> TrainStep:
        pre = self.pre_acts(x)
        threshold = self.threshold.relu()
        latents = _JumpReLUFn.apply(pre, threshold, self.cfg.jumprelu_bandwidth)
        recon = self.decode(latents)
        mse = (recon - target).pow(2).sum(-1).mean()
        l0 = _StepFn.apply(pre, threshold, self.cfg.jumprelu_bandwidth).sum(-1).mean()
        loss = mse + self.cfg.l0_coefficient * sparsity_scale * l0
        return TrainStep(loss, {"mse": float(mse.detach()), "l0_loss": float(l0.detach())}, latents, recon)

    @torch.no_grad()
    def fold_input_scale(self, scale_in: float, scale_out: float | None = None) -> None:
        super().fold_input_scale(scale_in, scale_out)  # pre-activations, hence thresholds, are unchanged
