"""The SAE interface every architecture shares, its config, and the architecture registry.

An SAE maps an activation x: [..., d_in] to latents f: [..., d_sae] and back to a reconstruction
x_hat: [..., d_out] (d_out == d_in except for transcoders):

    f     = act(pre),  pre = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc
    x_hat = f @ W_dec + b_dec

Parameter names and shapes are SAELens's (`sae_lens/saes/sae.py`: W_enc [d_in, d_sae], b_enc [d_sae],
W_dec [d_sae, d_out], b_dec [d_out], JumpReLU's threshold [d_sae]), so a state dict moves between the
two libraries unchanged (see `thoughtlens/sae/io.py`). Architectures register themselves by name
(`@register_architecture("topk")`), as in SAELens's `sae_lens/registry.py`.

Training-only behaviour (sparsity penalties, AuxK, threshold updates) lives on the same class as
`training_loss`; the trainer (`thoughtlens/sae/train.py`) stays architecture-agnostic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from thoughtlens.dtypes import as_torch_dtype
from thoughtlens.errors import SAEError

ARCHITECTURES: dict[str, type[SAE]] = {}


def register_architecture(name: str):
    """Class decorator: make `cls` buildable as `SAEConfig(architecture=name, ...)`."""

    def wrap(cls: type[SAE]) -> type[SAE]:
        cls.architecture = name
        ARCHITECTURES[name] = cls
        return cls

    return wrap


def as_dtype(name: str | torch.dtype) -> torch.dtype:
    """'float32' / 'torch.float32' / torch.float32 -> torch.float32 (SAELens writes either spelling)."""
    return as_torch_dtype(name, error=SAEError)


@dataclass
class SAEConfig:
    """Everything needed to rebuild an SAE. Field names follow SAELens's configs where they exist.

    architecture: a key of ARCHITECTURES ("standard", "topk", "batchtopk", "jumprelu",
        "matryoshka_batchtopk", "transcoder").
    d_in / d_sae / d_out: input, latent and output widths (d_out None = d_in).
    hook_name / hook_name_out: the hook point read (and, for transcoders, the one written).
    k: active latents per token (topk) or on average over a batch (batchtopk family).
    matryoshka_widths: nested prefix widths, the last equal to d_sae.
    Training coefficients (ignored at inference): l1_coefficient (standard, transcoder),
    l0_coefficient + jumprelu_bandwidth + jumprelu_init_threshold (jumprelu),
    aux_k / aux_k_coefficient (topk family; AuxK, Gao et al. 2024), topk_threshold_lr (batchtopk).
    """

    architecture: str
    d_in: int
    d_sae: int
    d_out: int | None = None
    hook_name: str = ""
    hook_name_out: str | None = None
    model_name: str = ""
    dtype: str = "float32"
    apply_b_dec_to_input: bool = True
    k: float | None = None
    rescale_acts_by_decoder_norm: bool = False
    matryoshka_widths: list[int] | None = None
    l1_coefficient: float = 5.0
    l0_coefficient: float = 1.0
    jumprelu_bandwidth: float = 0.05
    jumprelu_init_threshold: float = 0.001
    aux_k: int | None = None
    aux_k_coefficient: float = 1 / 32
    topk_threshold_lr: float = 0.01
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise SAEError(
                f"unknown SAE architecture {self.architecture!r}: use one of {', '.join(sorted(ARCHITECTURES))}"
            )
        if self.d_in <= 0 or self.d_sae <= 0 or (self.d_out is not None and self.d_out <= 0):
            raise SAEError(f"SAE widths must be positive, got d_in={self.d_in} d_sae={self.d_sae} d_out={self.d_out}")
        as_dtype(self.dtype)
        ARCHITECTURES[self.architecture].check_config(self)

    @property
    def d_output(self) -> int:
        return self.d_in if self.d_out is None else self.d_out

    def replace(self, **changes) -> SAEConfig:
        return dataclasses.replace(self, **changes)


class SAEOutput(NamedTuple):
    """`recon, latents = sae(x)`: recon [..., d_out], latents [..., d_sae]."""

    recon: torch.Tensor
    latents: torch.Tensor


class TrainStep(NamedTuple):
    """What one training forward gives the trainer: the loss to minimise, its parts (floats, for
    logging), and the (training-mode) latents used to count L0 and dead latents."""

    loss: torch.Tensor
    parts: dict[str, float]
    latents: torch.Tensor
    recon: torch.Tensor


class SAE(nn.Module):
    """Base class: linear encoder, an activation chosen by the subclass, linear decoder.

    Subclasses override `activation(pre)` (inference), and optionally `training_loss`,
    `check_config`, `inference_export` (BatchTopK-style SAEs are saved as JumpReLU).
    `unit_norm_decoder = True` asks the trainer to keep decoder rows at unit norm (Gao et al.);
    otherwise the sparsity penalty is weighted by the decoder norms (Anthropic's April 2024 update,
    as SAELens's StandardTrainingSAE).
    """

    architecture: str = ""
    unit_norm_decoder: bool = False
    uses_dead_mask: bool = False

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        dtype = as_dtype(cfg.dtype)
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.d_output
        # SAELens's init (sae.py `initialize_weights`): kaiming-uniform decoder, encoder = its transpose.
        W_dec = torch.empty(d_sae, d_out, dtype=dtype)
        nn.init.kaiming_uniform_(W_dec)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(
            W_dec.T.clone().contiguous()
            if d_out == d_in
            else nn.init.kaiming_uniform_(torch.empty(d_in, d_sae, dtype=dtype))
        )
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_out, dtype=dtype))

    # ---- config checks ---------------------------------------------------------------------------

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        """Raise SAEError for a config this architecture cannot use."""
        if cfg.d_out is not None and cfg.d_out != cfg.d_in:
            raise SAEError(
                f"{cls.architecture} SAEs reconstruct their input (d_out == d_in); "
                f"use architecture='transcoder' for d_out={cfg.d_out}"
            )

    # ---- inference -------------------------------------------------------------------------------

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """pre: [..., d_sae] before the activation function."""
        x = x.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """latents: [..., d_sae] for x: [..., d_in]."""
        return self.activation(self.pre_acts(x))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """recon: [..., d_out] for latents: [..., d_sae]."""
        return latents.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> SAEOutput:
        latents = self.encode(x)
        return SAEOutput(self.decode(latents), latents)

    # ---- training ----------------------------------------------------------------------------------

    def training_loss(
        self, x: torch.Tensor, target: torch.Tensor, dead_mask: torch.Tensor | None, sparsity_scale: float
    ) -> TrainStep:
        """Reconstruction MSE (summed over d_out, mean over the batch: SAELens's convention) plus the
        architecture's sparsity / auxiliary terms. x: [batch, d_in], target: [batch, d_out];
        dead_mask: [d_sae] bool; sparsity_scale in [0, 1] warms the sparsity penalty up."""
        latents = self.encode(x)
        recon = self.decode(latents)
        mse = (recon - target).pow(2).sum(-1).mean()
        return TrainStep(mse, {"mse": float(mse)}, latents, recon)

    @torch.no_grad()
    def after_step(self, latents: torch.Tensor) -> None:
        """Called after each optimiser step (BatchTopK updates its threshold here)."""

    # ---- export ------------------------------------------------------------------------------------

    def inference_export(self) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
        """The config and state dict to save: the same SAE by default."""
        return self.cfg, {k: v.detach() for k, v in self.state_dict().items()}

    @torch.no_grad()
    def fold_input_scale(self, scale_in: float, scale_out: float | None = None) -> None:
        """The SAE was trained on x * scale_in (and targets * scale_out); make it take raw activations.
        Latents are unchanged (SAELens `fold_activation_norm_scaling_factor`, generalised to transcoders)."""
        scale_out = scale_in if scale_out is None else scale_out
        self.W_enc.mul_(scale_in)
        if self.cfg.apply_b_dec_to_input and scale_out != scale_in:
            raise SAEError("cannot fold different input and output scales when b_dec is applied to the input")
        self.W_dec.div_(scale_out)
        self.b_dec.div_(scale_out)

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def extra_repr(self) -> str:
        c = self.cfg
        extra = f", k={c.k}" if c.k is not None else ""
        return f"{c.architecture}: d_in={c.d_in}, d_sae={c.d_sae}, d_out={c.d_output}{extra}, hook={c.hook_name!r}"


def build_sae(cfg: SAEConfig | None = None, /, **kwargs) -> SAE:
    """An SAE of `cfg.architecture` (or built from keyword arguments: build_sae(architecture="topk", ...))."""
    if cfg is None:
        cfg = SAEConfig(**kwargs)
    elif kwargs:
        cfg = cfg.replace(**kwargs)
    return ARCHITECTURES[cfg.architecture](cfg)


def decoder_init_norm_(sae: SAE, norm: float = 0.1) -> None:
    """Scale decoder rows to `norm` and tie the encoder to the decoder's transpose (SAELens
    TrainingSAEConfig.decoder_init_norm = 0.1, Anthropic's April 2024 'heuristic' init)."""
    with torch.no_grad():
        sae.W_dec.mul_(norm / sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))
        if sae.cfg.d_output == sae.cfg.d_in:
            sae.W_enc.copy_(sae.W_dec.T)


def check_finite(x: torch.Tensor, what: str) -> None:
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(-1).sum()) if x.ndim > 1 else int((~torch.isfinite(x)).sum())
        raise SAEError(
            f"{what} contains NaN or inf in {bad} rows: "
            "run the model in float32 (thoughtlens.load(dtype='float32')) or drop those inputs"
        )
