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
from thoughtlens.sae.activations import token_windows
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
    return F.cross_entropy(logits[:, :-1].float().flatten(0, 1), tokens[:, 1:].flatten(), reduction="none").view(
        tokens.shape[0], -1
    )


def evaluate_sae(model, sae: SAE, texts: Sequence[str], **kw) -> SAEMetrics:
    """Core metrics of one SAE (see `evaluate_saes`)."""
    return evaluate_saes(model, {"sae": sae}, texts, **kw)["sae"]


@torch.no_grad()
def evaluate_saes(
    model,
    saes: dict[str, SAE],
    texts: Sequence[str],
    *,
    context_size: int = 128,
    batch_size: int = 8,
    max_tokens: int = 16_384,
    dense_threshold: float = 0.1,
    on_progress: OnProgress | None = None,
) -> dict[str, SAEMetrics]:
    """Core metrics of several SAEs on the model's activations over `texts` (use text they were not
    trained on). The clean and zero-ablated forwards are shared by all SAEs of the same hook.
    max_tokens: evaluate exactly this many tokens (fewer only when the corpus runs out); the last window
    counts only its first tokens."""
    if not saes:
        raise SAEError("no SAEs to evaluate")
    if max_tokens < 1:
        raise SAEError(f"max_tokens must be at least 1, got {max_tokens}: pass the number of tokens to evaluate")
    for sae in saes.values():
        check_fits(model, sae)
        sae.eval()
    hooks = sorted(
        {h for s in saes.values() for h in (s.cfg.hook_name, s.cfg.hook_name_out or s.cfg.hook_name)},
        key=model.hook_names.index,
    )
    out_hooks = sorted({s.cfg.hook_name_out or s.cfg.hook_name for s in saes.values()}, key=model.hook_names.index)
    windows = token_windows(model.tokenizer, texts, context_size)
    acc = {
        name: {
            "sq_err": 0.0,
            "l0": 0.0,
            "sum": None,
            "sum2": 0.0,
            "ce": 0.0,
            "fired": torch.zeros(s.cfg.d_sae, dtype=torch.long),
        }
        for name, s in saes.items()
    }
    ce_clean, ce_zero = 0.0, {h: 0.0 for h in out_hooks}
    n_tok = n_pred = 0
    tracker = Tracker(on_progress, "sae eval", f"evaluating {len(saes)} SAE(s)", total=max_tokens)
    per_window = context_size - 1  # tokens (and predictions) a window adds: every position but BOS
    while n_tok < max_tokens:
        left = max_tokens - n_tok
        rows = [w for _, w in zip(range(min(batch_size, -(-left // per_window))), windows)]
        if not rows:
            break
        tokens = torch.tensor(rows, dtype=torch.long, device=model.device)
        # Exactly max_tokens in all: the last windows count only their first `take` tokens (row-major).
        take = min(left, len(rows) * per_window)
        keep = torch.arange(len(rows) * per_window) < take

        def ce_sum(logits: torch.Tensor) -> float:
            return float(_next_token_ce(logits, tokens).flatten().cpu()[keep].sum())

        clean, cache = model.run_with_cache(tokens, names_filter=hooks)
        ce_clean += ce_sum(clean)
        for h in out_hooks:
            with splice(model, h, _ZeroExceptFirst()):
                ce_zero[h] += ce_sum(model.forward(tokens))
        for name, sae in saes.items():
            a = acc[name]
            x = cache[sae.cfg.hook_name][:, 1:].float().reshape(-1, sae.cfg.d_in)[keep.to(tokens.device)]  # BOS dropped
            y = cache[sae.cfg.hook_name_out or sae.cfg.hook_name][:, 1:].float().reshape(-1, sae.cfg.d_output)
            y = y[keep.to(tokens.device)]
            check_finite(x, f"activations at {sae.cfg.hook_name}")
            recon, latents = sae(x.to(sae.device))
            recon, latents = recon.float().cpu(), latents.float().cpu()
            y = y.cpu()
            a["sq_err"] += float((recon - y).pow(2).sum())
            a["sum"] = y.sum(0) if a["sum"] is None else a["sum"] + y.sum(0)
            a["sum2"] += float(y.pow(2).sum())
            a["l0"] += float((latents > 0).sum())
            a["fired"] += (latents > 0).sum(0)
            with splice_sae(model, sae, skip_first=True):
                a["ce"] += ce_sum(model.forward(tokens))
        n_tok += take
        n_pred += take
        tracker.advance(take)
    if n_tok == 0:
        raise SAEError(
            f"the evaluation corpus is shorter than one window of {context_size} tokens: add text or lower context_size"
        )
    results = {}
    for name, sae in saes.items():
        a = acc[name]
        var = a["sum2"] - float(a["sum"].pow(2).sum()) / n_tok
        clean_ce, zero_ce, spliced_ce = (
            ce_clean / n_pred,
            ce_zero[sae.cfg.hook_name_out or sae.cfg.hook_name] / n_pred,
            a["ce"] / n_pred,
        )
        denom = zero_ce - clean_ce
        results[name] = SAEMetrics(
            l0=a["l0"] / n_tok,
            fvu=a["sq_err"] / max(var, 1e-12),
            mse=a["sq_err"] / n_tok,
            ce_clean=clean_ce,
            ce_spliced=spliced_ce,
            ce_zero=zero_ce,
            ce_loss_recovered=(zero_ce - spliced_ce) / denom if abs(denom) > 1e-12 else float("nan"),
            dead_fraction=float((a["fired"] == 0).float().mean()),
            dense_fraction=float((a["fired"] > dense_threshold * n_tok).float().mean()),
            n_tokens=n_tok,
        )
    return results


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

    X = (
        features.detach().float().cpu().numpy()
        if isinstance(features, torch.Tensor)
        else np.asarray(features, dtype=np.float32)
    )
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
