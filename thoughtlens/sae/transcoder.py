"""Transcoder: a sparse dictionary that reads one hook point (the MLP's input) and predicts another
(the MLP's output), Dunefsky et al. (2024). Same parameter layout as SAELens's Transcoder
(`sae_lens/saes/transcoder.py`): W_dec is [d_sae, d_out], b_dec is [d_out] and is never subtracted from
the input (apply_b_dec_to_input must be False). Trained with the standard ReLU + decoder-norm-weighted
L1 loss against the output hook's activations.
"""

from __future__ import annotations

from thoughtlens.errors import SAEError
from thoughtlens.sae.base import SAEConfig, register_architecture
from thoughtlens.sae.standard import StandardSAE


@register_architecture("transcoder")
class Transcoder(StandardSAE):
    """f = relu(x_in @ W_enc + b_enc); x_out_hat = f @ W_dec + b_dec."""

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        if cfg.apply_b_dec_to_input:
            raise SAEError(
                "transcoders cannot subtract b_dec from their input (it lives in the output space): "
                "pass apply_b_dec_to_input=False"
            )
