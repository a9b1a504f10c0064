"""Grokking modular addition, with the progress measures of Nanda et al. 2023.

"Progress measures for grokking via mechanistic interpretability" (Nanda, Chan, Lieberum, Smith,
Steinhardt, ICLR 2023); their code: github.com/mechanistic-interpretability-grokking/progress-measures-paper
(`transformers.py` for the model and training, `helpers.py` for the measures). Defaults reproduce the
paper's mainline run: p = 113, inputs "a b =", a one-layer transformer without LayerNorm (d_model 128,
4 heads of 32, ReLU MLP of 512, learned positional embeddings), 30 % of the p^2 pairs for training,
full-batch AdamW (lr 1e-3, weight decay 1.0 on every parameter, betas (0.9, 0.98)), 10 warm-up steps,
cross-entropy at the last position in float64.

    run = train_grokking("runs/grok", GrokkingConfig(steps=12000))
    df = grokking_measures("runs/grok")            # one row per checkpoint
    plot_grokking(df, "runs/grok/progress.png")

Measures (`progress_measures`), with the key frequencies found on the final model:
  train/test loss and accuracy;
  restricted loss: the logits keep only their cos/sin(w_k(a+b)) components for the key frequencies w_k
    (plus each output's mean, the paper's bias correction), loss on all pairs (helpers.calculate_trig_loss);
  excluded loss: the logits lose those components, loss on the training pairs (helpers.calculate_excluded_loss,
    all key frequencies removed at once as in the paper's "excluded_loss_2D_full");
  Gini coefficient of the norms of the embedding's Fourier components (the paper's sparsity measure);
  total sum of squared weights.
Deviations: the output has p classes (the paper's model also scored the "=" token and dropped it); only the
last position's query, MLP and unembedding are computed (the others never reach the loss: same logits, 3x
less work); key frequencies come from the embedding's Fourier norms (share of squared norm >= key_share)
rather than from clustering MLP neurons.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from thoughtlens.errors import ConfigError, ThoughtlensError
from thoughtlens.train.checkpoints import Checkpoints, plot_measures
from thoughtlens.train.trainer import Trainer, TrainerConfig, TrainResult

CONFIG_FILE = "grokking_config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class GrokkingConfig:
    p: int = 113
    frac_train: float = 0.3
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 10
    steps: int = 12000
    seed: int = 0  # model init and the train/test split
    n_checkpoints: int = 30  # log-spaced ...
    every: int = 250  # ... plus one every `every` steps, so the phases are resolved

    def __post_init__(self):
        if self.p < 3 or any(self.p % d == 0 for d in range(2, int(self.p**0.5) + 1)):
            raise ConfigError(f"p={self.p} must be a prime >= 3 (the paper uses 113)")
        if not 0 < self.frac_train < 1:
            raise ConfigError(f"frac_train={self.frac_train} must lie in (0, 1); the paper uses 0.3")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")


class OneLayerTransformer(nn.Module):
    """The paper's model (transformers.py: Embed, PosEmbed, Attention, MLP, Unembed; no LayerNorm).
    Weights are stored as [in, out] (the paper's are [out, in]); init is the paper's: N(0, 1/d_model),
    W_U N(0, 1/d_vocab), MLP biases zero."""

    def __init__(self, cfg: GrokkingConfig):
        super().__init__()
        d, h, dh, vocab = cfg.d_model, cfg.n_heads, cfg.d_model // cfg.n_heads, cfg.p + 1  # token p is "="
        self.n_heads, self.d_head = h, dh
        s = 1 / math.sqrt(d)
        self.W_E = nn.Parameter(torch.randn(vocab, d) * s)
        self.W_pos = nn.Parameter(torch.randn(3, d) * s)
        self.W_Q = nn.Parameter(torch.randn(h, d, dh) * s)
        self.W_K = nn.Parameter(torch.randn(h, d, dh) * s)
        self.W_V = nn.Parameter(torch.randn(h, d, dh) * s)
        self.W_O = nn.Parameter(torch.randn(h, dh, d) * s)
        self.W_in = nn.Parameter(torch.randn(d, cfg.d_mlp) * s)
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.randn(cfg.d_mlp, d) * s)
        self.b_out = nn.Parameter(torch.zeros(d))
        self.W_U = nn.Parameter(torch.randn(d, cfg.p) / math.sqrt(vocab))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [batch, 3] (a, b, "=") -> logits at the last position: [batch, p]."""
        resid = self.W_E[tokens] + self.W_pos  # [batch, pos, d_model]
        q = torch.einsum("bd,hde->bhe", resid[:, -1], self.W_Q)  # only the last query reaches the loss
        k = torch.einsum("bpd,hde->bhpe", resid, self.W_K)
        v = torch.einsum("bpd,hde->bhpe", resid, self.W_V)
        pattern = torch.softmax(torch.einsum("bhe,bhpe->bhp", q, k) / math.sqrt(self.d_head), dim=-1)
        z = torch.einsum("bhp,bhpe->bhe", pattern, v)  # [batch, head, d_head]
        x = resid[:, -1] + torch.einsum("bhe,hed->bd", z, self.W_O)
        x = x + F.relu(x @ self.W_in + self.b_in) @ self.W_out + self.b_out
        return x @ self.W_U


# ---- data ---------------------------------------------------------------------------------------------


@dataclass
class ModularData:
    tokens: torch.Tensor  # [p*p, 3]: (a, b, p) in order a * p + b
    labels: torch.Tensor  # [p*p]: (a + b) % p
    is_train: torch.Tensor  # [p*p] bool


def modular_data(cfg: GrokkingConfig) -> ModularData:
    """Every pair (a, b); a seeded random frac_train of them for training (as the paper's gen_train_test)."""
    p = cfg.p
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=1)
    labels = (tokens[:, 0] + tokens[:, 1]) % p
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(cfg.seed))
    is_train = torch.zeros(p * p, dtype=torch.bool)
    is_train[order[: int(cfg.frac_train * p * p)]] = True
    return ModularData(tokens, labels, is_train)


def cross_entropy64(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The paper's loss_fn: log-softmax in float64."""
    return -logits.double().log_softmax(-1).gather(-1, labels[:, None])[:, 0].mean()


# ---- training and checkpoints -----------------------------------------------------------------------


def save_checkpoint(model: OneLayerTransformer, directory: Path, cfg: GrokkingConfig | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, directory / WEIGHTS_FILE)
    if cfg is not None:
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(cfg)))


def load_checkpoint(directory: str | Path) -> OneLayerTransformer:
    """A grokking model from a checkpoint directory (safetensors weights + grokking_config.json)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise ThoughtlensError(f"{directory} is not a grokking checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    raw = json.loads((directory / CONFIG_FILE).read_text())
    cfg = GrokkingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    model = OneLayerTransformer(cfg)
    state = {k: v.float() for k, v in load_file(directory / WEIGHTS_FILE).items()}
    model.load_state_dict(state)
    model.config = cfg
    return model.eval()


def train_grokking(
    out_dir: str | Path,
    cfg: GrokkingConfig = GrokkingConfig(),
    *,
    max_seconds: float | None = None,
    on_progress: Callable[[dict], None] | None = None,
    device: str = "cpu",
) -> TrainResult:
    """Train (or resume) into out_dir/step_NNNNNN checkpoints."""
    torch.manual_seed(cfg.seed)
    model = OneLayerTransformer(cfg)
    data = modular_data(cfg)
    train_tokens, train_labels = data.tokens[data.is_train], data.labels[data.is_train]
    tc = TrainerConfig(
        steps=cfg.steps,
        batch_size=len(train_labels),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        betas=cfg.betas,
        warmup=cfg.warmup,
        schedule="constant",
        grad_clip=None,
        seed=cfg.seed,
        n_checkpoints=cfg.n_checkpoints,
        log_every=100,
        max_seconds=max_seconds,
        decay_all=True,
    )
    trainer = Trainer(
        model,
        lambda step: {"tokens": train_tokens, "labels": train_labels},
        tc,
        out_dir,
        loss_fn=lambda m, batch: cross_entropy64(m(batch["tokens"]), batch["labels"]),
        save=lambda m, d: save_checkpoint(m, d, cfg),
        load=lambda m, d: m.load_state_dict(load_checkpoint(d).state_dict()),  # copies onto m's device
        extra_checkpoint_steps=tuple(range(cfg.every, cfg.steps + 1, cfg.every)),
        device=device,
    )
    return trainer.train(on_progress)


# ---- the Fourier basis and the measures ----------------------------------------------------------------


def fourier_basis(p: int) -> torch.Tensor:
    """[p, p] orthonormal rows: constant, then cos(2 pi f x / p), sin(2 pi f x / p) for f = 1..p//2
    (row 2f - 1 is cos f, row 2f is sin f), as the paper's fourier_basis."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for f in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * f * x / p), torch.sin(2 * math.pi * f * x / p)]
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True)


def embedding_frequency_norms(model: OneLayerTransformer) -> np.ndarray:
    """[p//2 + 1]: norm of the number embeddings' Fourier components per frequency (index 0: the constant)."""
    p = model.W_U.shape[1]
    coeffs = fourier_basis(p) @ model.W_E[:p].detach().double()  # [p basis rows, d_model]
    sq = coeffs.pow(2).sum(-1)
    per_freq = [sq[0]] + [sq[2 * f - 1] + sq[2 * f] for f in range(1, p // 2 + 1)]
    return torch.stack(per_freq).sqrt().numpy()


def key_frequencies(model: OneLayerTransformer, key_share: float = 0.04) -> list[int]:
    """Frequencies (1..p//2) holding at least key_share of the embedding's squared Fourier norm."""
    sq = embedding_frequency_norms(model)[1:] ** 2
    share = sq / sq.sum()
    return [int(f) + 1 for f in np.argsort(-share) if share[f] >= key_share]


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, -> 1 when one holds everything."""
    x = np.sort(np.abs(np.asarray(values, dtype=float)))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def _xpy_directions(p: int, freq: int, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors over the p*p pairs for cos(w(a+b)) and sin(w(a+b)) (helpers.get_component_cos_xpy / _sin_xpy)."""
    c, s = basis[2 * freq - 1], basis[2 * freq]
    cos_xpy = (torch.outer(c, c) - torch.outer(s, s)).flatten() / math.sqrt(2)
    sin_xpy = (torch.outer(s, c) + torch.outer(c, s)).flatten() / math.sqrt(2)
    return cos_xpy, sin_xpy


def key_frequency_logits(logits: torch.Tensor, key_freqs: list[int]) -> torch.Tensor:
    """The part of logits [p*p, p] (pairs in order a * p + b) spanned by cos/sin(w_k(a+b)) for the key freqs."""
    p = logits.shape[1]
    basis = fourier_basis(p)
    out = torch.zeros_like(logits, dtype=torch.float64)
    for f in key_freqs:
        for direction in _xpy_directions(p, f, basis):
            out += direction[:, None] @ (direction[None, :] @ logits.double())
    return out


@torch.no_grad()
def progress_measures(model: OneLayerTransformer, data: ModularData, key_freqs: list[int]) -> dict[str, float]:
    """Every measure of the module docstring for one model."""
    logits = model(data.tokens).double()  # [p*p, p]
    tr, te = data.is_train, ~data.is_train
    keyed = key_frequency_logits(logits, key_freqs)
    restricted = keyed + (logits - keyed).mean(0, keepdim=True)  # the paper's bias correction
    excluded = logits - keyed
    return {
        "train_loss": float(cross_entropy64(logits[tr], data.labels[tr])),
        "test_loss": float(cross_entropy64(logits[te], data.labels[te])),
        "train_acc": float((logits[tr].argmax(-1) == data.labels[tr]).double().mean()),
        "test_acc": float((logits[te].argmax(-1) == data.labels[te]).double().mean()),
        "restricted_loss": float(cross_entropy64(restricted, data.labels)),
        "excluded_loss": float(cross_entropy64(excluded[tr], data.labels[tr])),
        "gini_embed_fourier": gini(_component_norms(model)),
        "weight_norm_sq": float(sum(p.double().pow(2).sum() for p in model.parameters())),
    }


def _component_norms(model: OneLayerTransformer) -> np.ndarray:
    p = model.W_U.shape[1]
    return (fourier_basis(p) @ model.W_E[:p].detach().double()).norm(dim=-1).numpy()


@dataclass
class GrokkingSummary:
    key_freqs: list[int]
    step_train_100: int | None  # first checkpoint with train accuracy 1.0
    step_test_99: int | None  # first checkpoint with test accuracy >= 0.99
    final: dict[str, float]


def grokking_measures(
    out_dir: str | Path, key_freqs: list[int] | None = None, on_progress: Callable[[int, int], None] | None = None
) -> tuple[pd.DataFrame, GrokkingSummary]:
    """progress_measures at every checkpoint of out_dir, with the key frequencies of the last checkpoint."""
    ckpts = Checkpoints(out_dir, load=load_checkpoint)
    final_model = ckpts.load()
    freqs = key_freqs if key_freqs is not None else key_frequencies(final_model)
    data = modular_data(final_model.config)
    df = ckpts.measure(lambda m: progress_measures(m, data, freqs), on_progress=on_progress)
    first = lambda mask: int(df.loc[mask, "step"].iloc[0]) if mask.any() else None  # noqa: E731
    summary = GrokkingSummary(
        freqs, first(df["train_acc"] >= 1.0), first(df["test_acc"] >= 0.99), df.iloc[-1].drop("step").to_dict()
    )
    return df, summary


def plot_grokking(df: pd.DataFrame, path: str | Path, summary: GrokkingSummary | None = None) -> Path:
    """Losses (log scale), accuracies, restricted/excluded loss, Gini and weight norm over training."""
    marks = {}
    if summary is not None:
        if summary.step_train_100 is not None:
            marks["train acc 100%"] = summary.step_train_100
        if summary.step_test_99 is not None:
            marks["test acc 99%"] = summary.step_test_99
    title = f"grokking, key frequencies {summary.key_freqs}" if summary else "grokking"
    return plot_measures(
        df,
        path,
        panels=[
            ["train_loss", "test_loss"],
            ["train_acc", "test_acc"],
            ["excluded_loss", "restricted_loss", "test_loss"],
            ["gini_embed_fourier"],
            ["weight_norm_sq"],
        ],
        log_y=("train_loss", "excluded_loss"),
        title=title,
        marks=marks,
    )
