"""A BatchTopK crosscoder on paired activations of two models, with Latent Scaling to tell latents that
are truly specific to one model from artefacts of the sparsity loss.

    result = train_crosscoder(base, finetuned, corpus, layer=15)        # -> CrosscoderResult
    result.specific                     # fine-tuned-only latents that pass Latent Scaling
    result.contexts[j]                  # their top-activating contexts on the corpus
    result.save("runs/cc"); CrosscoderResult.load("runs/cc"); result.to_json()   # the diff page's data

What a crosscoder is (Lindsey et al. 2024, "Sparse Crosscoders for Cross-Layer Features and Model
Diffing"): one dictionary of latents read from both models' activations at the same token and hook, with
a decoder per model. Here it is an SAE over the concatenation x = [x_A; x_B]: [.., 2 * d_model], registered
as the architecture "batchtopk_crosscoder" in thoughtlens' SAE registry, so thoughtlens.sae's trainer
(checkpoint / resume, learning-rate schedule, AuxK, dead latents, progress) and its SAELens-format
save / load (cfg.json + sae_weights.safetensors, never pickle) serve it unchanged:

    f     = relu([x_A; x_B] @ W_enc + b_enc)                 W_enc [2d, d_sae]   (= sum of per-model encoders)
    x_hat = f @ W_dec + b_dec                                W_dec [d_sae, 2d]   (= [d^A | d^B] per latent)

The defaults follow the code of Minder, Dumas et al. 2025 ("Robustly identifying concepts introduced
during chat fine-tuning using crosscoders", arXiv 2504.02922; science-of-finetuning/crosscoder_learning
`dictionary_learning/dictionary.py`, class `BatchTopKCrossCoder`, and science-of-finetuning/diffing-toolkit):

- BatchTopK selection on the latent value times the sum of its per-model decoder norms
  (`CodeNormalization.CROSSCODER`: f_j * (||d_j^A|| + ||d_j^B||)); the kept values are decoded unscaled;
  no b_dec is subtracted from the input; decoder norms are free (no unit-norm constraint). At inference
  a latent fires when its scaled value passes a global threshold learned during training (EMA of the
  smallest kept scaled value), as `BatchTopKCrossCoder.encode(use_threshold=True)`.
- Initialisation (the toolkit's configs/diffing/method/crosscoder.yaml): the same encoder matrix for both
  models, columns at unit norm, decoder = encoder transposed (`same_init_for_all_layers`,
  `norm_init_scale=1.0`, `init_with_transpose`).
- Each model's activations are scaled by its own constant so that its mean norm is sqrt(d_model) (the
  toolkit's per-layer activation normalisation); the constants are folded into the weights after training
  (the crosscoder takes raw activations) and kept in `cfg.metadata["model_scales"]`, so decoder norms, the
  threshold and Latent Scaling are computed in the normalised space, as the toolkit does.
- Deviations, from thoughtlens.sae's trainer: the reconstruction loss is the normalised MSE of Gao et al.
  (a per-batch constant times the toolkit's summed MSE) plus AuxK; the threshold EMA starts at the first
  batch's value (thoughtlens.sae.batchtopk); on resume from a checkpoint the threshold is re-estimated from
  the first resumed batch (it is stored in cfg.metadata, not in the weights, so the file stays four
  SAELens tensors).

Which latents belong to one model: Lindsey's relative decoder norm r_j = ||d_j^B|| / (||d_j^A|| + ||d_j^B||)
is reported, and latents are tagged by the toolkit's rule (diffing-toolkit `utils/dictionary/analysis.py`,
`build_push_crosscoder_latent_df`): with dnorm_j = ((||d^A|| - ||d^B||) / max(||d^A||, ||d^B||) + 1) / 2,
B-only when dnorm < 0.1 (i.e. r > 5/6), A-only when dnorm > 0.9 (r < 1/6), shared when |dnorm - 0.5| < 0.1
(r in (4/9, 5/9)), "other" between; "dead" when the latent never fired on the evaluation activations.

Latent Scaling (Minder et al. section 3; diffing-toolkit `utils/dictionary/latent_scaling/closed_form.py`,
`closed_form_scalars`, targets in `latent_scaling/utils.py`): for latent j with probe direction d_j (its
decoder in the model it is specific to), fit the scalar beta that best explains a target y by
beta * f_j(x) * d_j over the corpus, in closed form

    beta = sum_i f_j(x_i) <d_j, y_i> / (sum_i f_j(x_i)^2 * ||d_j||^2)

for two targets in each model m: the reconstruction error with latent j's own contribution added back
(y = x_m - x_hat_m + f_j d_j^m, `load_base_error` / `load_ft_error`) and the reconstruction
(y = x_hat_m, `load_base_reconstruction`). The ratios nu_eps = beta_eps(other) / beta_eps(own) and
nu_r = beta_r(other) / beta_r(own) measure how much of the latent the other model still carries: near 0
for a latent truly specific to one model; large nu_eps flags Complete Shrinkage (the other model has the
concept but its decoder was shrunk to 0), large nu_r Latent Decoupling (the other model's reconstruction
carries it through other latents). Which latents are scored: as the toolkit, every latent tagged B-only
plus the lowest-dnorm 7 % of live latents whatever their tag (`num_effective_ft_only_latents`: 5000 of a
73,728-latent crosscoder), and symmetrically for A with the A decoder as probe (`compute_base_only`). The
paper's code does not fix a cut on nu: it ranks the chat-only latents by the rank sum of nu_eps and nu_r
and studies the lowest 5-50 % (sparsity-artifacts-crosscoders `tools/halfway_interventions.py`).
thoughtlens needs a yes / no, so a scored latent is *truly specific* when |nu_eps| < 0.3 and |nu_r| < 0.3
(`scaling_threshold`, our choice: the other model carries less than a third of what the own model does;
the rank sum is reported too). `CrosscoderResult.specific` lists the fine-tuned (B) side's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from thoughtlens.diff.pair import as_model
from thoughtlens.diff.weight_diff import first_changed_layer
from thoughtlens.errors import SAEError
from thoughtlens.jsonsafe import json_safe
from thoughtlens.model.cache import layer_of
from thoughtlens.progress import OnProgress, Tracker, note
from thoughtlens.sae.activations import ActivationSource, model_activations, token_windows
from thoughtlens.sae.base import SAEConfig, build_sae, check_finite, register_architecture
from thoughtlens.sae.batchtopk import BatchTopKSAE
from thoughtlens.sae.io import load_sae, save_sae
from thoughtlens.sae.topk import Selection
from thoughtlens.sae.train import TrainConfig, TrainResult, train_saes

ARCHITECTURE = "batchtopk_crosscoder"
CLASSES = ("shared", "a_only", "b_only", "other", "dead")


# ---- the architecture ---------------------------------------------------------------------------------


@register_architecture(ARCHITECTURE)
class BatchTopKCrosscoder(BatchTopKSAE):
    """BatchTopK crosscoder over x = [x_A; x_B]: [..., 2 * d_model] (see the module docstring).

    W_enc [2d, d_sae], b_enc [d_sae], W_dec [d_sae, 2d], b_dec [2d]: SAELens names and shapes, so the
    file format is thoughtlens.sae's. `decoder_norms()` [d_sae, 2] are in the normalised space.
    """

    unit_norm_decoder = False  # the per-model decoder norms are what the analysis reads
    uses_dead_mask = True

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        if cfg.d_out is not None and cfg.d_out != cfg.d_in:
            raise SAEError(f"a crosscoder reconstructs its paired input (d_out == d_in), got d_out={cfg.d_out}")
        if cfg.d_in % 2:
            raise SAEError(f"a crosscoder reads [x_A; x_B], so d_in must be 2 * d_model (even), got d_in={cfg.d_in}")
        if cfg.k is None or not 0 < cfg.k <= cfg.d_sae:
            raise SAEError(f"{cfg.architecture} needs k in (0, d_sae={cfg.d_sae}], got k={cfg.k}")
        scales = cfg.metadata.get("model_scales", [1.0, 1.0])
        if len(scales) != 2 or not all(isinstance(s, (int, float)) and s > 0 for s in scales):
            raise SAEError(f"crosscoder metadata model_scales must be two positive numbers, got {scales!r}")

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        d, d_sae = self.d_model, cfg.d_sae
        # Not persistent: the saved file holds exactly SAELens's four tensors; the threshold rides in cfg.metadata.
        del self.topk_threshold
        self.register_buffer(
            "topk_threshold",
            torch.tensor(float(cfg.metadata.get("topk_threshold", 0.0)), dtype=torch.float64),
            persistent=False,
        )
        self.register_buffer(
            "model_scales",
            torch.tensor([float(s) for s in cfg.metadata.get("model_scales", [1.0, 1.0])]),
            persistent=False,
        )
        with torch.no_grad():
            # diffing-toolkit configs/diffing/method/crosscoder.yaml: same_init_for_all_layers, norm_init_scale 1.0,
            # init_with_transpose (crosscoder_learning `CrossCoderEncoder`): one kaiming matrix, columns at unit norm,
            # used for both models; decoder = encoder^T.
            w = torch.nn.init.kaiming_uniform_(torch.empty(d, d_sae, dtype=self.W_enc.dtype))
            w = w / w.norm(dim=0, keepdim=True).clamp_min(1e-8)
            self.W_enc.copy_(torch.cat([w, w]))
            self.W_dec.copy_(self.W_enc.T)

    @property
    def d_model(self) -> int:
        return self.cfg.d_in // 2

    def _scale_columns(self) -> torch.Tensor:
        """[2d]: each model's normalisation constant repeated over its columns."""
        return self.model_scales.to(self.W_dec.dtype).repeat_interleave(self.d_model)

    def decoder_norms(self) -> torch.Tensor:
        """[d_sae, 2]: ||d_j^A||, ||d_j^B|| in the normalised space (where training happened)."""
        w = (self.W_dec * self._scale_columns()).reshape(self.cfg.d_sae, 2, self.d_model)
        return w.norm(dim=-1)

    def code_norm(self) -> torch.Tensor:
        """[d_sae]: the sum of per-model decoder norms, the factor BatchTopK ranks latents by."""
        return self.decoder_norms().sum(-1)

    # ---- BatchTopK on decoder-norm-scaled values -------------------------------------------------------

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        acts = pre.relu()
        scaled = acts * self.code_norm().to(acts.dtype)
        if self.training:
            flat = scaled.reshape(-1)
            n_keep = min(int(self.cfg.k * acts.shape[:-1].numel()), flat.numel())
            keep = torch.zeros_like(flat, dtype=torch.bool)
            keep[flat.topk(n_keep, sorted=False).indices] = True
            return acts * keep.reshape(acts.shape)
        return acts * (scaled > self.topk_threshold.to(acts.dtype))

    def select(self, x: torch.Tensor) -> Selection:
        """Keep the int(k * batch) largest f_j * (||d_j^A|| + ||d_j^B||) of the batch; decode f_j unscaled."""
        return self.select_by_score(x, lambda pre: pre.relu() * self.code_norm())

    @torch.no_grad()
    def after_step(self, latents: torch.Tensor) -> None:
        # The threshold lives in the scaled space (BatchTopKCrossCoder compares f * code_norm with it).
        super().after_step(latents * self.code_norm())

    # ---- export ------------------------------------------------------------------------------------

    def inference_export(self):
        meta = {
            **self.cfg.metadata,
            "topk_threshold": float(self.topk_threshold),
            "model_scales": [float(s) for s in self.model_scales],
        }
        self.cfg = self.cfg.replace(metadata=meta)
        return self.cfg, {k: v.detach() for k, v in self.state_dict().items()}

    @torch.no_grad()
    def fold_model_scales(self, scale_a: float, scale_b: float) -> None:
        """The crosscoder was trained on [x_A * scale_a; x_B * scale_b]; make it take raw activations.
        Latents are unchanged; decoder norms, the threshold and Latent Scaling stay in the normalised space."""
        s = torch.tensor([scale_a, scale_b], dtype=self.W_dec.dtype).repeat_interleave(self.d_model)
        self.W_enc.mul_(s[:, None])
        self.W_dec.div_(s)
        self.b_dec.div_(s)
        self.model_scales.mul_(torch.tensor([scale_a, scale_b], dtype=self.model_scales.dtype))
        self.cfg = self.cfg.replace(
            metadata={**self.cfg.metadata, "model_scales": [float(v) for v in self.model_scales]}
        )


def build_crosscoder(
    d_model: int,
    d_sae: int,
    k: float,
    *,
    hook_name: str = "",
    model_names: Sequence[str] = ("A", "B"),
    seed: int = 0,
    **cfg,
) -> BatchTopKCrosscoder:
    """A fresh crosscoder for two models of width d_model (seeded)."""
    torch.manual_seed(seed)
    meta = {"models": list(model_names), "model_scales": [1.0, 1.0], **cfg.pop("metadata", {})}
    return build_sae(
        architecture=ARCHITECTURE,
        d_in=2 * d_model,
        d_sae=d_sae,
        k=k,
        hook_name=hook_name,
        model_name=" | ".join(model_names),
        apply_b_dec_to_input=False,
        metadata=meta,
        **cfg,
    )


def save_crosscoder(cc: BatchTopKCrosscoder, path: str | os.PathLike) -> Path:
    """cfg.json + sae_weights.safetensors (thoughtlens.sae's SAELens-format writer)."""
    return save_sae(cc, path)


def load_crosscoder(path: str | os.PathLike) -> BatchTopKCrosscoder:
    sae = load_sae(path)
    if not isinstance(sae, BatchTopKCrosscoder):
        raise SAEError(
            f"{path} holds a {sae.cfg.architecture} SAE, not a crosscoder: pass a directory written by save_crosscoder"
        )
    return sae


# ---- paired activations -------------------------------------------------------------------------------


def check_pair(model_a, model_b, hook_name: str) -> int:
    """d_model of the pair at `hook_name`; SAEError when the tokenizers or widths differ."""
    from thoughtlens.model.load import tokenizer_identity
    from thoughtlens.sae.activations import hook_widths

    ta, tb = tokenizer_identity(model_a.tokenizer), tokenizer_identity(model_b.tokenizer)
    if ta != tb:
        raise SAEError(
            f"a crosscoder needs two models with the same tokenizer ({model_a.name}: {ta}, {model_b.name}: {tb}): "
            "diff a fine-tune against its own base model"
        )
    (wa,), (wb,) = hook_widths(model_a, [hook_name]), hook_widths(model_b, [hook_name])
    if wa != wb:
        raise SAEError(
            f"{hook_name} is {wa} wide in {model_a.name} but {wb} in {model_b.name}: a crosscoder pairs "
            "models of the same width (a fine-tune and its base)"
        )
    return wa


class PairedActivationSource(ActivationSource):
    """Shuffled batches [batch_size, 2 * d_model] of [x_A; x_B] at one hook, the two models run on the
    same token windows (thoughtlens.sae.ActivationSource's windows, buffer, cache and progress)."""

    def __init__(self, model_a, model_b, hook_name: str, texts: Sequence[str] | None = None, **kwargs):
        self.model_b = model_b
        self._names = [getattr(model_a, "name", "A"), getattr(model_b, "name", "B")]
        super().__init__(model_a, hook_name, texts, **kwargs)
        if not self.cached:
            d = check_pair(model_a, model_b, hook_name)
            self.widths, self.d = [2 * d], 2 * d

    def _fingerprint(self) -> dict:
        return {**super()._fingerprint(), "paired_models": self._names}

    def ordered_chunks(self) -> Iterator[torch.Tensor]:
        """[n, 2d] chunks in corpus order (the cache's shards in index order, else the models' stream)."""
        from safetensors import safe_open

        meta = self._cached_meta()
        if meta is None:
            yield from self._model_chunks()
            return
        for i in range(meta["n_shards"]):
            with safe_open(str(self.cache_dir / f"shard_{i:05d}.safetensors"), framework="pt") as f:
                yield f.get_tensor("activations").float()

    def _activations(self, tokens: torch.Tensor) -> torch.Tensor:
        a = model_activations(self.model, tokens, self.hook_names).cpu()
        b = model_activations(self.model_b, tokens.to(self.model_b.device), self.hook_names).cpu()
        return torch.cat([a, b], dim=-1)


class _ScaledSource:
    """A source whose batches are multiplied column-wise by `col_scale` [d] (per-model normalisation)."""

    def __init__(self, source, col_scale: torch.Tensor):
        self.source, self.col_scale = source, col_scale
        self.hook_names, self.widths, self.d, self.batch_size = (
            source.hook_names,
            source.widths,
            source.d,
            source.batch_size,
        )

    def slice_of(self, hook_name: str) -> slice:
        return self.source.slice_of(hook_name)

    def batches(self, epoch: int = 0) -> Iterator[torch.Tensor]:
        for batch in self.source.batches(epoch):
            yield batch * self.col_scale

    def sample(self, n: int) -> torch.Tensor:
        return self.source.sample(n) * self.col_scale


def model_scales(acts: torch.Tensor) -> tuple[float, float]:
    """Per-model constants making each half of acts [n, 2d] have mean norm sqrt(d)."""
    d = acts.shape[1] // 2
    a, b = acts[:, :d].norm(dim=-1).mean(), acts[:, d:].norm(dim=-1).mean()
    if float(a) == 0 or float(b) == 0:
        raise SAEError("one model's activations are all zero at this hook: pick another hook or layer")
    return math.sqrt(d) / float(a), math.sqrt(d) / float(b)


def fit_crosscoder(
    source,
    d_sae: int,
    k: float,
    train_config: TrainConfig | None = None,
    *,
    hook_name: str | None = None,
    model_names: Sequence[str] = ("A", "B"),
    seed: int = 0,
    on_progress: OnProgress | None = None,
) -> tuple[BatchTopKCrosscoder, TrainResult]:
    """Train a crosscoder on a paired source (PairedActivationSource, or thoughtlens.sae.TensorSource over
    [x_A; x_B] rows). Returns the crosscoder (eval mode, raw activations in) and the trainer's result."""
    hook_name = hook_name or source.hook_names[0]
    width = source.slice_of(hook_name)
    d_in = width.stop - width.start
    if d_in % 2:
        raise SAEError(f"paired activations must be [x_A; x_B] (an even width), got {d_in} columns")
    cfg = train_config or TrainConfig()
    sample = source.sample(cfg.n_init_activations)[:, width]
    check_finite(sample, "the paired activations")
    s_a, s_b = model_scales(sample)
    col = torch.ones(source.d)
    col[width] = torch.tensor([s_a, s_b]).repeat_interleave(d_in // 2)
    cc = build_crosscoder(d_in // 2, d_sae, k, hook_name=hook_name, model_names=model_names, seed=seed)
    # Scaling is done per model above; the decoder keeps the crosscoder's own init.
    cfg = dataclasses.replace(cfg, normalize_activations=False, decoder_init_norm=None, seed=seed)
    result = train_saes({"crosscoder": cc}, _ScaledSource(source, col), cfg, on_progress=on_progress)
    out = result.saes["crosscoder"]
    out.fold_model_scales(s_a, s_b)
    return out.eval(), result


# ---- which latents belong to which model --------------------------------------------------------------


def norm_table(cc: BatchTopKCrosscoder, *, threshold: float = 0.1) -> list[dict]:
    """Per latent: norm_a, norm_b, relative_norm (Lindsey: ||d^B|| / (||d^A|| + ||d^B||)), dnorm (the
    toolkit's) and cls in shared / a_only / b_only / other (diffing-toolkit's tags, `threshold` 0.1)."""
    with torch.no_grad():
        n = cc.decoder_norms().double()
    na, nb = n[:, 0], n[:, 1]
    rel = nb / (na + nb).clamp_min(1e-30)
    dnorm = ((na - nb) / n.max(-1).values.clamp_min(1e-30) + 1) / 2
    rows = []
    for j in range(cc.cfg.d_sae):
        dn = float(dnorm[j])
        cls = (
            "b_only"
            if dn < threshold
            else "a_only"
            if dn > 1 - threshold
            else "shared"
            if abs(dn - 0.5) < threshold
            else "other"
        )
        rows.append(
            {
                "latent": j,
                "norm_a": float(na[j]),
                "norm_b": float(nb[j]),
                "relative_norm": float(rel[j]),
                "dnorm": dn,
                "cls": cls,
            }
        )
    return rows


@dataclass
class LatentScaling:
    """Closed-form betas (one per latent of `latents`) in the normalised space.

    beta_error[m], beta_recon[m]: [n] for model m in (0 = A, 1 = B), probing with each latent's decoder in
    its `own` model; nu_error / nu_recon = beta(other) / beta(own); n_active: activations where it fired."""

    latents: list[int]
    own: list[int]
    beta_error: torch.Tensor
    beta_recon: torch.Tensor
    n_active: torch.Tensor
    nu_error: torch.Tensor
    nu_recon: torch.Tensor


@torch.no_grad()
def latent_scaling(
    cc: BatchTopKCrosscoder,
    batches: Sequence[torch.Tensor] | Iterator[torch.Tensor],
    latents: Sequence[int],
    own: Sequence[int] | int = 1,
    *,
    max_activations: int | None = None,
) -> LatentScaling:
    """Latent Scaling of `latents` on paired activations (batches of raw [x_A; x_B] rows, e.g.
    `source.batches()`). own: the model (0 = A, 1 = B) whose decoder is each latent's probe direction
    (1 for fine-tuned-only latents, as the toolkit's default `probe_decoder="ft"`)."""
    latents = [int(j) for j in latents]
    own_t = torch.tensor([own] * len(latents) if isinstance(own, int) else list(own), dtype=torch.long)
    d = cc.d_model
    idx = torch.tensor(latents, dtype=torch.long)
    cols = cc._scale_columns()
    wn = (cc.W_dec * cols).reshape(cc.cfg.d_sae, 2, d)[idx]  # [n, 2, d] normalised decoders
    probe = wn[torch.arange(len(latents)), own_t]  # [n, d]
    g_err = torch.zeros(2, len(latents), dtype=torch.float64)  # sum_i f_ij <probe_j, y_i>
    g_rec = torch.zeros(2, len(latents), dtype=torch.float64)
    c = torch.zeros(len(latents), dtype=torch.float64)  # sum_i f_ij^2
    n_active = torch.zeros(len(latents), dtype=torch.long)
    seen = 0
    for x in batches:
        x = x.to(cc.W_enc.dtype)
        check_finite(x, "the paired activations")
        if x.shape[-1] != cc.cfg.d_in:
            raise SAEError(
                f"the crosscoder reads {cc.cfg.d_in} columns ([x_A; x_B]), these activations have {x.shape[-1]}"
            )
        f = cc.encode(x)
        recon = cc.decode(f)
        xn, rn = (x * cols).reshape(-1, 2, d), (recon * cols).reshape(-1, 2, d)
        fj = f[:, idx].double()  # [b, n]
        for m in (0, 1):
            err = (xn[:, m] - rn[:, m]).double() @ probe.double().T  # [b, n]: <probe_j, x_m - x_hat_m>
            own_back = (wn[:, m] * probe).sum(-1).double()  # <probe_j, d_j^m>: latent j's own part added back
            g_err[m] += (fj * err).sum(0) + (fj**2).sum(0) * own_back
            g_rec[m] += (fj * (rn[:, m].double() @ probe.double().T)).sum(0)
        c += (fj**2).sum(0)
        n_active += (fj > 0).sum(0)
        seen += len(x)
        if max_activations is not None and seen >= max_activations:
            break
    denom = c * probe.double().pow(2).sum(-1)
    beta_err = g_err / denom
    beta_rec = g_rec / denom
    ar = torch.arange(len(latents))
    nu_err = beta_err[1 - own_t, ar] / beta_err[own_t, ar]
    nu_rec = beta_rec[1 - own_t, ar] / beta_rec[own_t, ar]
    return LatentScaling(latents, own_t.tolist(), beta_err, beta_rec, n_active, nu_err, nu_rec)


def _rank(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: (math.isnan(values[i]), values[i]))
    ranks = [0.0] * len(values)
    for r, i in enumerate(order, start=1):
        ranks[i] = float(r)
    return ranks


@torch.no_grad()
def latent_frequencies(cc: BatchTopKCrosscoder, batches, max_activations: int | None = None) -> torch.Tensor:
    """[d_sae]: fraction of activations where each latent fires (inference threshold)."""
    counts, seen = torch.zeros(cc.cfg.d_sae), 0
    for x in batches:
        counts += (cc.encode(x.to(cc.W_enc.dtype)) > 0).sum(0).float()
        seen += len(x)
        if max_activations is not None and seen >= max_activations:
            break
    return counts / max(seen, 1)


def analyse_latents(
    cc: BatchTopKCrosscoder,
    activations: torch.Tensor,
    *,
    norm_threshold: float = 0.1,
    scaling_threshold: float = 0.3,
    candidate_fraction: float = 0.07,
    batch_size: int = 4096,
) -> list[dict]:
    """The latent table: norm_table plus firing frequency and Latent Scaling of the candidate latents.

    Candidates (`candidate`: "b" or "a", the model whose decoder is the probe): every latent tagged b_only
    (a_only) plus the `candidate_fraction` of live latents with the lowest (highest) dnorm, as the toolkit
    scores "the 5000 lowest dec_norm_diff latents" of a 73,728-latent crosscoder (6.8 %) whatever their tag
    (`compute_scalers_from_config`, `num_effective_ft_only_latents`). Each candidate gets its betas,
    nu_error, nu_recon, their rank sum within its side, and `specific`: |nu_error| and |nu_recon| both
    below `scaling_threshold`. Other latents have specific False. activations: raw [n, 2d] rows."""
    check_finite(activations, "the paired activations")
    batches = list(activations.split(batch_size))
    rows = norm_table(cc, threshold=norm_threshold)
    freq = latent_frequencies(cc, batches)
    for r in rows:
        r["frequency"] = float(freq[r["latent"]])
        if r["frequency"] == 0.0:
            r["cls"] = "dead"
        r.update(candidate=None, nu_error=None, nu_recon=None, rank_sum=None, specific=False)
    alive = sorted((r for r in rows if r["cls"] != "dead"), key=lambda r: r["dnorm"])
    n_pool = max(1, math.ceil(candidate_fraction * cc.cfg.d_sae))
    for r in alive[:n_pool] + [r for r in alive if r["cls"] == "b_only"]:
        r["candidate"] = "b"
    for r in alive[::-1][:n_pool] + [r for r in alive if r["cls"] == "a_only"]:
        if r["candidate"] is None or r["dnorm"] > 0.5:  # a tiny dictionary can put one latent in both pools
            r["candidate"] = "a"
    picked = [r for r in rows if r["candidate"] is not None]
    if picked:
        ls = latent_scaling(
            cc, batches, [r["latent"] for r in picked], [1 if r["candidate"] == "b" else 0 for r in picked]
        )
        for i, r in enumerate(picked):
            own = ls.own[i]
            r.update(
                beta_error_own=float(ls.beta_error[own, i]),
                beta_error_other=float(ls.beta_error[1 - own, i]),
                beta_recon_own=float(ls.beta_recon[own, i]),
                beta_recon_other=float(ls.beta_recon[1 - own, i]),
                nu_error=float(ls.nu_error[i]),
                nu_recon=float(ls.nu_recon[i]),
                n_active=int(ls.n_active[i]),
            )
            r["specific"] = bool(abs(r["nu_error"]) < scaling_threshold and abs(r["nu_recon"]) < scaling_threshold)
        for side in ("a", "b"):
            group = [r for r in picked if r["candidate"] == side]
            ranks = [
                a + b for a, b in zip(_rank([r["nu_error"] for r in group]), _rank([r["nu_recon"] for r in group]))
            ]
            for r, s in zip(group, ranks):
                r["rank_sum"] = s
    return rows


# ---- top-activating contexts -----------------------------------------------------------------------------


def _model_rows(
    model_a, model_b, hook: str, texts: Sequence[str], context_size: int, model_batch_size: int, max_tokens: int | None
) -> Iterator[torch.Tensor]:
    """In-order paired activations [n, 2d] of the corpus windows, BOS positions left out."""
    gen = token_windows(model_a.tokenizer, texts, context_size)
    n = 0
    while max_tokens is None or n < max_tokens:
        rows = [w for _, w in zip(range(model_batch_size), gen)]
        if not rows:
            break
        tokens = torch.tensor(rows, dtype=torch.long)
        a = model_activations(model_a, tokens.to(model_a.device), [hook]).cpu()
        b = model_activations(model_b, tokens.to(model_b.device), [hook]).cpu()
        acts = torch.cat([a, b], -1)[:, 1:].reshape(-1, a.shape[-1] * 2)
        if max_tokens is not None:
            acts = acts[: max_tokens - n]
        n += len(acts)
        yield acts


@torch.no_grad()
def top_contexts(
    cc: BatchTopKCrosscoder,
    model_a,
    model_b,
    texts: Sequence[str],
    latents: Sequence[int],
    *,
    n: int = 10,
    context_size: int = 128,
    model_batch_size: int = 8,
    max_tokens: int | None = None,
    left: int = 12,
    right: int = 3,
    rows: Iterable[torch.Tensor] | None = None,
    on_progress: OnProgress | None = None,
) -> dict[int, list[dict]]:
    """The `n` highest activations of each latent over the corpus (the windows of training, BOS left out),
    each as {activation, token, token_id, left, right, window, position}: the token, `left` tokens before
    it and `right` after it, decoded. rows: the corpus's paired activations [n, 2d] in corpus order (e.g.
    `PairedActivationSource.ordered_chunks()`, which reads its cache instead of running the models again);
    default: run both models."""
    latents = [int(j) for j in latents]
    if not latents:
        return {}
    if rows is None:
        rows = _model_rows(model_a, model_b, cc.cfg.hook_name, texts, context_size, model_batch_size, max_tokens)
    idx = torch.tensor(latents)
    best_v = torch.full((n, len(latents)), -1.0)
    best_r = torch.zeros((n, len(latents)), dtype=torch.long)
    tracker = Tracker(on_progress, "crosscoder contexts", "top contexts of model-specific latents", total=max_tokens)
    seen = 0
    for acts in rows:
        check_finite(acts, f"activations of {cc.cfg.hook_name}")
        f = cc.encode(acts.to(cc.W_enc.dtype))[:, idx]  # [rows, n_latents]
        r_ids = torch.arange(seen, seen + len(acts))
        v = torch.cat([best_v, f])
        top = v.topk(min(n, len(v)), dim=0)
        cand = torch.cat([best_r, r_ids[:, None].expand(-1, len(latents))])
        best_v, best_r = top.values, cand.gather(0, top.indices)
        seen += len(acts)
        tracker.advance(len(acts))
    per = context_size - 1  # activations per window (BOS left out)
    need = int(best_r.max()) // per + 1 if seen else 0
    windows = [w for _, w in zip(range(need), token_windows(model_a.tokenizer, texts, context_size))]
    tok = model_a.tokenizer
    out: dict[int, list[dict]] = {}
    for i, j in enumerate(latents):
        items = []
        for r in range(best_v.shape[0]):
            val = float(best_v[r, i])
            if val <= 0:
                continue
            w, p = divmod(int(best_r[r, i]), per)
            p += 1
            ids = windows[w]
            items.append(
                {
                    "activation": val,
                    "token": tok.decode([ids[p]]),
                    "token_id": ids[p],
                    "left": tok.decode(ids[max(1, p - left) : p]),
                    "right": tok.decode(ids[p + 1 : p + 1 + right]),
                    "window": w,
                    "position": p,
                }
            )
        out[j] = items
    return out


# ---- the whole job ------------------------------------------------------------------------------------


@dataclass
class CrosscoderResult:
    """crosscoder: trained, raw activations in. latents: analyse_latents' table. specific: latents truly
    specific to the fine-tuned model (B-only by decoder norms and by Latent Scaling), most active first.
    contexts: top contexts of every model-specific latent (A-only and B-only). meta: models, hook, settings,
    thresholds, training figures."""

    crosscoder: BatchTopKCrosscoder
    latents: list[dict]
    specific: list[int]
    contexts: dict[int, list[dict]] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in CLASSES}
        for r in self.latents:
            out[r["cls"]] += 1
        out["b_specific"] = sum(1 for r in self.latents if r["candidate"] == "b" and r["specific"])
        out["a_specific"] = sum(1 for r in self.latents if r["candidate"] == "a" and r["specific"])
        return out

    def to_json(self) -> dict:
        """JSON-safe page data: meta, class counts, the model-specific latents (A-only / B-only rows of the
        latent table, with Latent Scaling and top contexts), and the relative norm of every latent."""
        rows = [r for r in self.latents if r["cls"] in ("a_only", "b_only") or r["specific"]]
        return json_safe(
            {
                "meta": self.meta,
                "counts": self.counts(),
                "specific": self.specific,
                "model_specific": [{**r, "contexts": self.contexts.get(r["latent"], [])} for r in rows],
                "relative_norms": [r["relative_norm"] for r in self.latents],
            }
        )

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_crosscoder(self.crosscoder, path / "crosscoder")
        doc = json_safe(
            {
                "latents": self.latents,
                "specific": self.specific,
                "history": self.history,
                "meta": self.meta,
                "contexts": {str(k): v for k, v in self.contexts.items()},
            }
        )
        tmp = path / f".result.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path / "result.json")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CrosscoderResult:
        path = Path(path)
        if not (path / "result.json").is_file():
            raise SAEError(f"{path} holds no result.json: pass a directory written by CrosscoderResult.save")
        doc = json.loads((path / "result.json").read_text())
        return cls(
            load_crosscoder(path / "crosscoder"),
            doc["latents"],
            doc["specific"],
            {int(k): v for k, v in doc["contexts"].items()},
            doc["history"],
            doc["meta"],
        )


def train_crosscoder(
    base,
    finetuned,
    corpus: str | os.PathLike | Sequence[str],
    layer: int | None = None,
    *,
    hook: str | None = None,
    expansion: int = 8,
    k: float = 32,
    max_tokens: int = 100_000,
    epochs: float = 2.0,
    context_size: int = 128,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    norm_threshold: float = 0.1,
    scaling_threshold: float = 0.3,
    candidate_fraction: float = 0.07,
    n_contexts: int = 10,
    cache_dir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    analysis_tokens: int = 32_768,
    dtype: torch.dtype | str | None = torch.float32,
    on_progress: OnProgress | None = None,
) -> CrosscoderResult:
    """Train a BatchTopK crosscoder on `base` (A) and `finetuned` (B) at `hook` (default
    blocks.{layer}.hook_resid_post, layer default `default_layer`: n_layers // 2, or the middle of the layers
    the fine-tune changed when it froze the lower ones; a layer whose weights at and below it are identical in
    both models gets a note, as its activations cannot differ) over `corpus` (documents, or what
    thoughtlens.diff.corpus.read_corpus takes: a text / .jsonl file, "gsm8k", "neutral"), tag its latents,
    run Latent Scaling on the candidates and collect the top contexts of the model-specific ones.

    Models are HookedModels or paths (loaded in `dtype`). The first `max_tokens` tokens of the corpus are
    streamed through both models once (into `cache_dir`, a temporary directory by default) and trained on
    for `epochs` passes; d_sae = expansion * d_model. `analysis_tokens` of them give the latent table
    (frequencies, Latent Scaling); thresholds: see the module docstring. Resumable through `checkpoint_dir`.
    """
    from thoughtlens.diff.corpus import read_corpus as read_diff_corpus

    model_a, model_b = as_model(base, dtype), as_model(finetuned, dtype)
    texts = read_diff_corpus(corpus)
    n = model_a.cfg.n_layers
    changed = first_changed_layer(model_a, model_b) if model_a.cfg.n_layers == model_b.cfg.n_layers else 0
    if hook is None:
        layer = default_layer(n, changed) if layer is None else layer
        if not 0 <= layer < n:
            raise SAEError(f"layer {layer} is out of range: {model_a.name} has layers 0..{n - 1}")
        hook = f"blocks.{layer}.hook_resid_post"
    hook_layer = layer_of(hook)
    if changed is None:
        note(
            on_progress,
            f"{model_a.name} and {model_b.name} have the same embeddings and layers: their activations "
            "are identical everywhere, so every latent will be shared; diff two different models",
        )
    elif hook_layer is not None and hook_layer < changed:
        note(
            on_progress,
            f"layer {hook_layer}: the two models' weights at and below it are identical, so their "
            f"activations there are the same and every latent will be shared; pick a layer >= {changed} "
            f"(the first the fine-tune changed), e.g. {default_layer(n, changed)}",
        )
    d = check_pair(model_a, model_b, hook)
    with contextlib.ExitStack() as stack:
        if cache_dir is None:  # one model pass, then every epoch and the analysis read the shards
            cache_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="thoughtlens-cc-"))) / "acts"
        return _train(
            model_a,
            model_b,
            texts,
            hook,
            d,
            expansion=expansion,
            k=k,
            max_tokens=max_tokens,
            epochs=epochs,
            context_size=context_size,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            norm_threshold=norm_threshold,
            scaling_threshold=scaling_threshold,
            candidate_fraction=candidate_fraction,
            n_contexts=n_contexts,
            cache_dir=cache_dir,
            checkpoint_dir=checkpoint_dir,
            analysis_tokens=analysis_tokens,
            on_progress=on_progress,
        )


def default_layer(n_layers: int, first_changed: int | None) -> int:
    """The crosscoder's default layer: the middle layer (n_layers // 2), or, when the fine-tune left the layers
    below the middle untouched (first_changed > n_layers // 2, see `weights.first_changed_layer`), the middle of
    the layers it changed, where the two models' activations differ: 24 for a 30-layer pair trained from
    layer 20 on."""
    middle = n_layers // 2
    if first_changed is None or first_changed <= middle:
        return middle
    return (first_changed + n_layers - 1) // 2


def _train(
    model_a,
    model_b,
    texts,
    hook,
    d,
    *,
    expansion,
    k,
    max_tokens,
    epochs,
    context_size,
    batch_size,
    lr,
    seed,
    norm_threshold,
    scaling_threshold,
    candidate_fraction,
    n_contexts,
    cache_dir,
    checkpoint_dir,
    analysis_tokens,
    on_progress,
) -> CrosscoderResult:
    # The shuffling buffer must fit in what the corpus gives: count its windows' tokens (tokenising only).
    available = 0
    for _ in token_windows(model_a.tokenizer, texts, context_size):
        available += context_size - 1
        if available >= max_tokens:
            break
    available = min(available, max_tokens)
    if available < 4 * batch_size:
        raise SAEError(
            f"the corpus gives only {available} tokens, too few for batches of {batch_size}: add text "
            "or lower batch_size"
        )
    buffer = min(2**14, available // 2)
    source = PairedActivationSource(
        model_a,
        model_b,
        hook,
        texts,
        context_size=context_size,
        batch_size=batch_size,
        buffer_size=buffer,
        max_tokens=max_tokens,
        cache_dir=cache_dir,
        seed=seed,
        on_progress=on_progress,
    )
    total = int(epochs * available)
    cfg = TrainConfig(
        total_activations=total,
        lr=lr,
        dead_window=max(batch_size * 50, total // 10),
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
        n_init_activations=min(8192, max_tokens),
        seed=seed,
    )
    names = [model_a.name, model_b.name]
    cc, train = fit_crosscoder(
        source, expansion * d, k, cfg, hook_name=hook, model_names=names, seed=seed, on_progress=on_progress
    )
    acts = source.sample(analysis_tokens)  # the analysis set: tagging, frequencies, Latent Scaling
    rows = analyse_latents(
        cc,
        acts,
        norm_threshold=norm_threshold,
        scaling_threshold=scaling_threshold,
        candidate_fraction=candidate_fraction,
    )
    specific = sorted((r for r in rows if r["candidate"] == "b" and r["specific"]), key=lambda r: -r["frequency"])
    model_specific = [r["latent"] for r in rows if r["cls"] in ("a_only", "b_only") or r["specific"]]
    contexts = top_contexts(
        cc,
        model_a,
        model_b,
        texts,
        model_specific,
        n=n_contexts,
        context_size=context_size,
        max_tokens=max_tokens,
        rows=source.ordered_chunks(),
        on_progress=on_progress,
    )
    with torch.no_grad():
        fvu = _fvu(cc, acts)
    last = [h for h in train.history if h["step"] == train.steps - 1]
    meta = {
        "models": names,
        "hook": hook,
        "d_model": d,
        "d_sae": cc.cfg.d_sae,
        "k": k,
        "tokens": len(acts),
        "steps": train.steps,
        "seed": seed,
        "lr": lr,
        "norm_threshold": norm_threshold,
        "scaling_threshold": scaling_threshold,
        "candidate_fraction": candidate_fraction,
        "fvu_a": fvu[0],
        "fvu_b": fvu[1],
        "l0": last[0]["l0"] if last else None,
        "model_scales": [float(s) for s in cc.model_scales],
    }
    return CrosscoderResult(cc, rows, [r["latent"] for r in specific], contexts, train.history, meta)


def _fvu(cc: BatchTopKCrosscoder, acts: torch.Tensor) -> tuple[float, float]:
    """Fraction of variance unexplained per model on acts [n, 2d]."""
    recon = torch.cat([cc(x).recon for x in acts.split(4096)])
    d = cc.d_model
    out = []
    for sl in (slice(0, d), slice(d, 2 * d)):
        t, r = acts[:, sl], recon[:, sl]
        out.append(float((t - r).pow(2).sum() / (t - t.mean(0)).pow(2).sum().clamp_min(1e-12)))
    return out[0], out[1]


__all__ = [
    "ARCHITECTURE",
    "BatchTopKCrosscoder",
    "CrosscoderResult",
    "LatentScaling",
    "PairedActivationSource",
    "analyse_latents",
    "build_crosscoder",
    "check_pair",
    "default_layer",
    "fit_crosscoder",
    "latent_scaling",
    "load_crosscoder",
    "norm_table",
    "save_crosscoder",
    "top_contexts",
    "train_crosscoder",
]
