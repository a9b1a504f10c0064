"""BatchTopK SAE (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders"; code bartbussmann/BatchTopK),
as SAELens's BatchTopKTrainingSAE (`sae_lens/saes/batchtopk_sae.py`).

Training keeps the k * batch largest relu'd pre-activations of the whole batch, so k is active per
token on average, not exactly. A global threshold tracks the smallest kept activation (EMA, rate
topk_threshold_lr); at inference the SAE is a JumpReLU with that threshold, and it is saved as one
(architecture "jumprelu"), exactly as SAELens does. Loss, AuxK and decoder handling: as TopK.
"""

from __future__ import annotations

import torch

from thoughtlens.sae.base import SAE, SAEConfig, register_architecture
from thoughtlens.sae.topk import Selection, TopKSAE, sparse_forward


def batch_topk(pre: torch.Tensor, k: float) -> torch.Tensor:
    """Keep the int(k * n_tokens) largest relu(pre) entries of pre: [n_tokens, d_sae]."""
    acts = pre.relu()
    flat = acts.flatten()
    n_keep = min(int(k * acts.shape[:-1].numel()), flat.numel())
    vals, idx = flat.topk(n_keep, sorted=False)
    return torch.zeros_like(flat).scatter(-1, idx, vals).reshape(acts.shape)


@register_architecture("batchtopk")
class BatchTopKSAE(TopKSAE):
    """Training: batch top-k. Inference (eval mode): relu(pre) * 1[pre > threshold]."""

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        from thoughtlens.errors import SAEError

        if cfg.d_out is not None and cfg.d_out != cfg.d_in:
            raise SAEError(f"{cfg.architecture} SAEs reconstruct their input (d_out == d_in)")
        if cfg.k is None or not 0 < cfg.k <= cfg.d_sae:
            raise SAEError(f"{cfg.architecture} needs k in (0, d_sae={cfg.d_sae}], got k={cfg.k}")

    def __init__(self, cfg):
        super().__init__(cfg)
        # float64, as SAELens: an EMA of small numbers in float32 drifts.
        self.register_buffer("topk_threshold", torch.zeros((), dtype=torch.float64))

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        if self.training:
            return batch_topk(pre.reshape(-1, pre.shape[-1]), self.cfg.k).reshape(pre.shape)
        return pre.relu() * (pre > self.topk_threshold.to(pre.dtype)).to(pre)

    def select(self, x: torch.Tensor) -> Selection:
        """Keep the int(k * batch) largest relu'd pre-activations of the whole batch."""
        return self.select_by_score(x, lambda pre: pre.relu())

    def select_by_score(self, x: torch.Tensor, score) -> Selection:
        """Keep the int(k * batch) largest `score(pre)` of the whole batch (relu'd pre-activations here; a
        crosscoder weighs them by decoder norms); the kept latents decode their unscaled pre-activations."""
        pre = SAE.pre_acts(self, x)
        with torch.no_grad():
            flat = score(pre).flatten()
            n_keep = min(int(self.cfg.k * x.shape[0]), flat.numel())
            idx = flat.topk(n_keep, sorted=False).indices.sort().values  # row-major: rows non-decreasing
            rows, cols = idx // pre.shape[1], idx % pre.shape[1]
        return sparse_forward(self, pre, rows, cols)

    @torch.no_grad()
    def after_step(self, latents: torch.Tensor) -> None:
        positive = latents[latents > 0]
        if positive.numel():
            lr = self.cfg.topk_threshold_lr
            if float(self.topk_threshold) == 0.0:
                # Deviation from SAELens (EMA from 0): start at the first batch's value, so that a short
                # run does not end with a threshold still far below the kept activations.
                self.topk_threshold.fill_(float(positive.min()))
            else:
                self.topk_threshold.mul_(1 - lr).add_(lr * positive.min().double())

    def inference_export(self):
        """Saved as a JumpReLU SAE whose threshold is the learned global threshold (SAELens
        `process_state_dict_for_saving_inference`)."""
        state = {k: v.detach() for k, v in self.state_dict().items() if k != "topk_threshold"}
        state["threshold"] = torch.full_like(self.b_enc.detach(), float(self.topk_threshold))
        cfg = self.cfg.replace(
            architecture="jumprelu",
            metadata={**self.cfg.metadata, "trained_as": self.cfg.architecture, "k": self.cfg.k},
        )
        return cfg, state
