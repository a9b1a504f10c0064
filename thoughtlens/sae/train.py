"""Train one or several SAEs from one activation stream.

    source = ActivationSource(model, "blocks.15.hook_resid_post", read_corpus("gsm8k"), cache_dir="runs/acts")
    saes = {"topk": build_sae(architecture="topk", d_in=576, d_sae=4608, k=32, hook_name=source.hook_names[0])}
    result = train_saes(saes, source, TrainConfig(total_activations=500_000, checkpoint_dir="runs/ckpt"))
    save_sae(result.saes["topk"], "runs/sae_topk")

Every batch of the stream trains every SAE, so several architectures or widths cost one pass of the
model (and, with a cache, none on later runs). The recipe, with where each part comes from:

- Inputs are scaled by a constant so that E||x||^2 = d_in (SAELens `normalize_activations=
  "expected_average_only_in"`, Anthropic's April 2024 update); the constant is folded into the weights
  when training ends, so saved SAEs take raw activations.
- b_dec starts at the mean activation; decoder rows start at norm 0.1 with W_enc = W_dec^T (April update).
- Adam (0.9, 0.999); learning rate warmed up linearly over the first 5% of steps and decayed linearly
  to 0 over the last 20% (April update); the sparsity coefficient (L1 / L0) warms up over the first 5%.
- Architectures with `unit_norm_decoder` (TopK family, JumpReLU) get their decoder rows kept at unit
  norm: the gradient's component along each row is removed before the step and rows are renormalised
  after it (openai/sparse_autoencoder `unit_norm_decoder_grad_adjustment_`, `unit_norm_decoder_`).
- A latent is dead when it has not fired in the last `dead_window` activations; TopK-family SAEs feed
  the dead mask to AuxK.
- A checkpoint (one safetensors file: SAE weights, Adam state, dead-latent counters; the step and the
  configs in its metadata) is written every `checkpoint_every` steps, at the end and on Ctrl-C; the
  same call resumes from it, reading the same batches (exactly the same ones when the source is cached).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from thoughtlens.errors import SAEError
from thoughtlens.files import output_modes
from thoughtlens.progress import OnProgress, Tracker
from thoughtlens.sae.activations import ActivationSource
from thoughtlens.sae.base import SAE, SAEConfig, check_finite, decoder_init_norm_

CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass
class TrainConfig:
    """total_activations: training length in activations (steps = total / source.batch_size).
    dead_window: activations without firing after which a latent counts as dead."""

    total_activations: int = 1_000_000
    lr: float = 4e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    lr_warmup_fraction: float = 0.05
    lr_decay_fraction: float = 0.2
    sparsity_warmup_fraction: float = 0.05
    dead_window: int = 100_000
    decoder_init_norm: float | None = 0.1
    init_b_dec: str = "mean"
    normalize_activations: bool = True
    n_init_activations: int = 8192
    checkpoint_dir: str | None = None
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.total_activations <= 0 or self.lr <= 0 or self.dead_window <= 0:
            raise SAEError("total_activations, lr and dead_window must be positive")
        if self.init_b_dec not in ("mean", "zeros"):
            raise SAEError(f"init_b_dec must be 'mean' or 'zeros', got {self.init_b_dec!r}")


@dataclass
class TrainResult:
    """saes: trained copies in eval mode, taking raw activations (scale folded in).
    history: one dict per logged step and SAE (step, sae, l0, fvu, dead_fraction, loss parts).
    scales: the input scaling constant of each hook. resumed_from: the step training resumed at."""

    saes: dict[str, SAE]
    history: list[dict] = field(default_factory=list)
    scales: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    resumed_from: int = 0


def lr_factor(step: int, total: int, warmup: float, decay: float) -> float:
    """Linear warm-up over the first `warmup` fraction, linear decay to 0 over the last `decay` fraction."""
    w, d = int(total * warmup), int(total * decay)
    if w and step < w:
        return (step + 1) / w
    if d and step >= total - d:
        return max(0.0, (total - step) / d)
    return 1.0


@torch.no_grad()
def _remove_parallel_grad(sae: SAE) -> None:
    if sae.W_dec.grad is None:
        return
    w = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    sae.W_dec.grad -= (sae.W_dec.grad * w).sum(-1, keepdim=True) * w


@torch.no_grad()
def _renorm_decoder(sae: SAE) -> None:
    sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))


def _config_dict(cfg: SAEConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


class _State:
    """What a checkpoint holds besides the SAEs themselves."""

    def __init__(self, saes: Mapping[str, SAE], opts: Mapping[str, torch.optim.Optimizer]):
        self.saes, self.opts = saes, opts
        self.since_fired = {n: torch.zeros(s.cfg.d_sae, dtype=torch.long) for n, s in saes.items()}
        self.step = 0
        self.scales: dict[str, float] = {}

    def save(self, directory: Path, train_cfg: TrainConfig) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        for name, sae in self.saes.items():
            for k, v in sae.state_dict().items():
                tensors[f"{name}/sae/{k}"] = v.detach().cpu().contiguous()
            for i, st in self.opts[name].state_dict()["state"].items():
                for k, v in st.items():
                    tensors[f"{name}/adam/{i}/{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
            tensors[f"{name}/since_fired"] = self.since_fired[name]
        meta = {
            "step": self.step,
            "scales": self.scales,
            "configs": {n: _config_dict(s.cfg) for n, s in self.saes.items()},
            "train_config": _config_dict_train(train_cfg),
        }
        tmp = directory / f".{CHECKPOINT_NAME}.tmp-{os.getpid()}"
        save_file(tensors, str(tmp), metadata={"thoughtlens": json.dumps(meta)})
        output_modes(tmp)
        os.replace(tmp, directory / CHECKPOINT_NAME)  # atomic: the old checkpoint or the new one, never half

    def load(self, path: Path) -> None:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["thoughtlens"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:
            raise SAEError(
                f"{path} is not a thoughtlens SAE checkpoint ({exc.__class__.__name__}): "
                "delete it or use another checkpoint_dir"
            ) from None
        want = {n: _config_dict(s.cfg) for n, s in self.saes.items()}
        have = meta["configs"]
        if set(have) != set(want):
            raise SAEError(
                f"checkpoint {path} holds SAEs {sorted(have)}, not {sorted(want)}: "
                "use another checkpoint_dir or delete it"
            )
        for name in want:
            diff = [k for k in want[name] if k != "metadata" and want[name][k] != have[name].get(k)]
            if diff:
                k = diff[0]
                raise SAEError(
                    f"checkpoint {path} is for another SAE '{name}' "
                    f"({k}={have[name].get(k)!r}, not {want[name][k]!r}): "
                    "use another checkpoint_dir or delete it"
                )
        for name, sae in self.saes.items():
            sae.load_state_dict({k[len(name) + 5 :]: v for k, v in tensors.items() if k.startswith(f"{name}/sae/")})
            opt_state = self.opts[name].state_dict()
            states: dict[int, dict] = {}
            for k, v in tensors.items():
                if k.startswith(f"{name}/adam/"):
                    i, key = k[len(name) + 6 :].split("/")
                    states.setdefault(int(i), {})[key] = v
            opt_state["state"] = states
            self.opts[name].load_state_dict(opt_state)
            self.since_fired[name] = tensors[f"{name}/since_fired"]
        self.step = int(meta["step"])
        self.scales = {k: float(v) for k, v in meta["scales"].items()}


def _config_dict_train(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d.pop("checkpoint_dir", None)
    return d


def _batches(source: ActivationSource, skip: int) -> Iterator[torch.Tensor]:
    """Endless shuffled batches (epoch after epoch), the first `skip` dropped (resume)."""
    epoch, seen = 0, 0
    while True:
        got_any = False
        for batch in source.batches(epoch):
            got_any = True
            if seen >= skip:
                yield batch
            seen += 1
        if not got_any:
            raise SAEError("the activation source produced no batches: check the corpus and max_tokens")
        epoch += 1


def train_saes(
    saes: Mapping[str, SAE] | SAE,
    source: ActivationSource,
    cfg: TrainConfig | None = None,
    *,
    on_progress: OnProgress | None = None,
) -> TrainResult:
    """Train every SAE of `saes` on every batch of `source` (see the module docstring for the recipe).

    Each SAE reads the columns of its `cfg.hook_name` (a transcoder's target: `cfg.hook_name_out`),
    which must be among `source.hook_names`. The SAEs passed in are trained in place (in the scaled
    space); the result holds exported copies that take raw activations.
    """
    cfg = cfg or TrainConfig()
    if isinstance(saes, SAE):
        saes = {saes.cfg.architecture: saes}
    saes = dict(saes)
    if not saes:
        raise SAEError("no SAEs to train")
    slices = {}
    for name, sae in saes.items():
        sl_in = source.slice_of(sae.cfg.hook_name)
        sl_out = source.slice_of(sae.cfg.hook_name_out or sae.cfg.hook_name)
        if sl_in.stop - sl_in.start != sae.cfg.d_in or sl_out.stop - sl_out.start != sae.cfg.d_output:
            raise SAEError(
                f"SAE '{name}' has d_in={sae.cfg.d_in}, d_out={sae.cfg.d_output} but {sae.cfg.hook_name} is "
                f"{sl_in.stop - sl_in.start} wide: set d_in to the hook's width"
            )
        slices[name] = (sl_in, sl_out)
    torch.manual_seed(cfg.seed)
    opts = {n: torch.optim.Adam(s.parameters(), lr=cfg.lr, betas=cfg.adam_betas) for n, s in saes.items()}
    state = _State(saes, opts)
    ckpt = Path(cfg.checkpoint_dir) / CHECKPOINT_NAME if cfg.checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        state.load(ckpt)
    else:
        _initialise(saes, source, slices, cfg, state)
    resumed_from = state.step
    total_steps = max(1, math.ceil(cfg.total_activations / source.batch_size))
    tracker = Tracker(on_progress, "sae training", "training SAEs", total=total_steps)
    tracker.advance(state.step)
    history: list[dict] = []
    scales = state.scales
    for sae in saes.values():
        sae.train()
    try:
        if state.step < total_steps:
            for batch in _batches(source, state.step):
                check_finite(batch, "an activation batch")
                lr_mult = lr_factor(state.step, total_steps, cfg.lr_warmup_fraction, cfg.lr_decay_fraction)
                sparsity = min(1.0, (state.step + 1) / max(1, int(total_steps * cfg.sparsity_warmup_fraction)))
                log = state.step % cfg.log_every == 0 or state.step == total_steps - 1
                parts_desc = []
                for name, sae in saes.items():
                    sl_in, sl_out = slices[name]
                    x = batch[:, sl_in] * scales[sae.cfg.hook_name]
                    target = batch[:, sl_out] * scales[sae.cfg.hook_name_out or sae.cfg.hook_name]
                    dead = state.since_fired[name] >= cfg.dead_window if sae.uses_dead_mask else None
                    for group in opts[name].param_groups:
                        group["lr"] = cfg.lr * lr_mult
                    out = sae.training_loss(x, target, dead, sparsity)
                    if not torch.isfinite(out.loss):
                        raise SAEError(
                            f"SAE '{name}' loss became {float(out.loss)} at step {state.step}: lower lr "
                            "(TrainConfig.lr) or check the activations"
                        )
                    opts[name].zero_grad(set_to_none=True)
                    out.loss.backward()
                    if sae.unit_norm_decoder:
                        _remove_parallel_grad(sae)
                    opts[name].step()
                    if sae.unit_norm_decoder:
                        _renorm_decoder(sae)
                    sae.after_step(out.latents.detach())
                    fired = (out.latents.detach() > 0).any(0)
                    state.since_fired[name] += len(batch)
                    state.since_fired[name][fired] = 0
                    if log:
                        with torch.no_grad():
                            l0 = float((out.latents > 0).sum(-1).float().mean())
                            fvu = float(
                                (out.recon - target).pow(2).sum()
                                / (target - target.mean(0)).pow(2).sum().clamp_min(1e-12)
                            )
                            dead_frac = float((state.since_fired[name] >= cfg.dead_window).float().mean())
                        history.append(
                            {
                                "step": state.step,
                                "sae": name,
                                "l0": l0,
                                "fvu": fvu,
                                "dead_fraction": dead_frac,
                                "lr": cfg.lr * lr_mult,
                                **out.parts,
                            }
                        )
                        parts_desc.append(f"{name} L0 {l0:.1f} FVU {fvu:.3f} dead {dead_frac:.0%}")
                state.step += 1
                if parts_desc:
                    tracker.description = " | ".join(parts_desc)
                tracker.advance(1, tokens=len(batch))
                if ckpt is not None and state.step % cfg.checkpoint_every == 0:
                    state.save(ckpt.parent, cfg)
                if state.step >= total_steps:
                    break
    except KeyboardInterrupt:
        if ckpt is not None:
            state.save(ckpt.parent, cfg)
        raise
    if ckpt is not None:
        state.save(ckpt.parent, cfg)
    exported = {}
    for name, sae in saes.items():
        out = copy.deepcopy(sae)
        out.fold_input_scale(scales[sae.cfg.hook_name], scales[sae.cfg.hook_name_out or sae.cfg.hook_name])
        exported[name] = out.eval()
    return TrainResult(exported, history, dict(scales), state.step, resumed_from)


@torch.no_grad()
def _initialise(saes, source, slices, cfg: TrainConfig, state: _State) -> None:
    """Scaling constants per hook, decoder init norm, b_dec = mean target (in the scaled space)."""
    sample = source.sample(cfg.n_init_activations)
    check_finite(sample, "the initial activations")
    for hook in source.hook_names:
        x = sample[:, source.slice_of(hook)]
        state.scales[hook] = (
            float(math.sqrt(x.shape[-1]) / x.norm(dim=-1).mean().clamp_min(1e-12)) if cfg.normalize_activations else 1.0
        )
    for name, sae in saes.items():
        if cfg.decoder_init_norm is not None:
            decoder_init_norm_(sae, cfg.decoder_init_norm)
        if sae.unit_norm_decoder:
            _renorm_decoder(sae)
        if cfg.init_b_dec == "mean":
            out_hook = sae.cfg.hook_name_out or sae.cfg.hook_name
            sae.b_dec.copy_((sample[:, slices[name][1]] * state.scales[out_hook]).mean(0))
