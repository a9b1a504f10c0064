"""How good is an SAE? The core metrics of SAELens's `evals.py` / SAEBench's `core` eval, and k-sparse
probing (SAEBench `sparse_probing`; Kantamneni et al. 2025 find it the most reliable downstream test).

- L0: active latents per token. FVU: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over the tokens.
- CE loss recovered: (CE_zero - CE_spliced) / (CE_zero - CE_clean), where CE_spliced is the model's
  next-token loss with the SAE's reconstruction in place of the activation and CE_zero with the
  activation set to zero (SAELens `get_recons_loss`, zero-ablation baseline). 1 = lossless.
- dead fraction: latents that never fired on the evaluation tokens; dense fraction: latents active
  on more than `dense_threshold` of them (SAEBench reports > 10% as dense).

BOS positions are left out of every metric and are not spliced (the SAE never saw them in training,
see activations.py); CE is measured on the predictions made from every other position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from thoughtlens.errors import SAEError
from thoughtlens.model.interventions import splice
from thoughtlens.progress import OnProgress, Tracker
from thoughtlens.sae.activations import model_activations, token_windows
from thoughtlens.sae.base import SAE, check_finite
from thoughtlens.sae.splice import check_fits, splice_sae


@dataclass
class SAEMetrics:
    l0: float
    fvu: float
    mse: float
    ce_clean: float
    ce_spliced: float
    ce_zero: float
    ce_loss_recovered: float
    dead_fraction: float
    dense_fraction: float
    n_tokens: int

    def as_dict(self) -> dict:
        return asdict(self)


def _next_token_ce(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Per-prediction CE [batch, pos-1] of logits [batch, pos, vocab] against the next tokens."""
    return F.cross_entropy(logits[:, :-1].float().flatten(0, 1), tokens[:, 1:].flatten(), reduction="none").view(tokens.shape[0], -1)


@torch.no_grad()
def evaluate_sae(
    model,
    sae: SAE,
    texts: Sequence[str],
    *,
    context_size: int = 128,
    batch_size: int = 8,
    max_tokens: int = 16_384,
    dense_threshold: float = 0.1,
    on_progress: OnProgress | None = None,
) -> SAEMetrics:
    """Core metrics of `sae` on the model's activations over `texts` (use text the SAE was not trained on)."""
    check_fits(model, sae)
    sae = sae.eval()
    hook_in = sae.cfg.hook_name
    hook_out = sae.cfg.hook_name_out or hook_in
    hooks = [hook_in] if hook_out == hook_in else [hook_in, hook_out]
    windows = token_windows(model.tokenizer, texts, context_size)
    n_tok, sq_err, l0_sum = 0, 0.0, 0.0
    sum_x, sum_x2 = None, 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long)
    ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    n_pred = 0
    tracker = Tracker(on_progress, "sae eval", f"evaluating {sae.cfg.architecture} at {hook_in}", total=max_tokens)
    while n_tok < max_tokens:
        rows = [w for _, w in zip(range(batch_size), windows)]
        if not rows:
            break
        tokens = torch.tensor(rows, dtype=torch.long, device=model.device)
        acts = model_activations(model, tokens, hooks)[:, 1:]  # drop BOS
        x = acts[..., : sae.cfg.d_in].reshape(-1, sae.cfg.d_in)
        y = acts[..., -sae.cfg.d_output :].reshape(-1, sae.cfg.d_output)
        check_finite(x, f"activations at {hook_in}")
        recon, latents = sae(x.to(sae.device))
        recon, latents = recon.float().cpu(), latents.float().cpu()
        sq_err += float((recon - y).pow(2).sum())
        sum_x = y.sum(0) if sum_x is None else sum_x + y.sum(0)
        sum_x2 += float(y.pow(2).sum())
        l0_sum += float((latents > 0).sum())
        fired += (latents > 0).sum(0)
        n_tok += len(x)
        clean = model.forward(tokens)
        with splice_sae(model, sae, skip_first=True):
            spliced = model.forward(tokens)
        with splice(model, hook_out, _ZeroExceptFirst()):
            zero = model.forward(tokens)
        for key, logits in (("clean", clean), ("spliced", spliced), ("zero", zero)):
            ce[key] += float(_next_token_ce(logits, tokens).sum())
        n_pred += tokens.shape[0] * (tokens.shape[1] - 1)
        tracker.advance(len(x))
    if n_tok == 0:
        raise SAEError(f"the evaluation corpus is shorter than one window of {context_size} tokens: add text or lower context_size")
    var = sum_x2 - float(sum_x.pow(2).sum()) / n_tok
    ce = {k: v / n_pred for k, v in ce.items()}
    denom = ce["zero"] - ce["clean"]
    return SAEMetrics(
        l0=l0_sum / n_tok,
        fvu=sq_err / max(var, 1e-12),
        mse=sq_err / n_tok,
        ce_clean=ce["clean"],
        ce_spliced=ce["spliced"],
        ce_zero=ce["zero"],
        ce_loss_recovered=(ce["zero"] - ce["spliced"]) / denom if abs(denom) > 1e-12 else float("nan"),
        dead_fraction=float((fired == 0).float().mean()),
        dense_fraction=float((fired > dense_threshold * n_tok).float().mean()),
        n_tokens=n_tok,
    )


class _ZeroExceptFirst(torch.nn.Module):
    """Zero-ablation baseline, with position 0 (BOS) untouched like the spliced run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], torch.zeros_like(x[:, 1:])], dim=1)


def k_sparse_probe(
    features: torch.Tensor | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    ks: Sequence[int] = (1, 2, 5, 10, 20),
    *,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> dict[int, float]:
    """Test accuracy of a logistic-regression probe on the k latents with the largest class-mean
    difference (chosen on the training split), for each k (SAEBench `sparse_probing`: select latents
    by mean difference, then fit a probe on those only). features: [n, d_sae]; labels: [n] binary."""
    from sklearn.linear_model import LogisticRegression

    X = features.detach().float().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, dtype=np.float32)
    y = np.asarray(labels).astype(int)
    if X.ndim != 2 or len(X) != len(y):
        raise SAEError(f"features must be [n, d_sae] with one label per row, got {X.shape} and {len(y)} labels")
    if set(np.unique(y)) - {0, 1} or len(np.unique(y)) < 2:
        raise SAEError("k-sparse probing needs binary labels with both classes present")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    n_test = max(1, int(round(test_fraction * len(y))))
    test, train = idx[:n_test], idx[n_test:]
    if len(np.unique(y[train])) < 2:
        raise SAEError("the training split has one class only: add examples of both classes")
    diff = np.abs(X[train][y[train] == 1].mean(0) - X[train][y[train] == 0].mean(0))
    order = np.argsort(-diff, kind="stable")
    out = {}
    for k in ks:
        cols = order[: min(k, X.shape[1])]
        clf = LogisticRegression(max_iter=1000).fit(X[train][:, cols], y[train])
        out[int(k)] = float(clf.score(X[test][:, cols], y[test]))
    return out
