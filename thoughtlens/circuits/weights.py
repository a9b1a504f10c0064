"""Circuits in weights: per-head W_Q / W_K / W_V / W_O, low-rank QK and OV products, composition scores.

Conventions (TransformerLens'): residual vectors are rows, so a head reads `x @ W_V` and writes
`z @ W_O`; its OV circuit is `W_V @ W_O` [d_model, d_model] and its QK circuit `W_Q @ W_K.T`
[d_model, d_model], with `x_query @ W_QK @ x_key.T` the attention score before scaling.

Approximations, stated once:
  * RoPE is ignored: the QK circuit is the content part of the score (RoPE rotates q and k by
    position, which the weights alone cannot show).
  * The pre-attention norm's elementwise weight is folded into W_Q / W_K / W_V (its per-token scale
    and centering are not: they depend on the input). Pass `fold_norm=False` to get raw weights.
  * GQA: query head h shares key/value head h // (n_heads // n_kv_heads); per-head W_K / W_V are
    repeated accordingly, so every function here indexes heads by query head.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from thoughtlens.errors import ThoughtlensError


@dataclass
class HeadWeights:
    """One layer's attention weights, per query head, in fp32.

    W_Q, W_K, W_V: [head, d_model, d_head]; W_O: [head, d_head, d_model]; b_O: [d_model] or None.
    """

    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    b_O: torch.Tensor | None


def _linear_in_out(module: nn.Module, conv1d: bool) -> torch.Tensor:
    """A projection's weight as [in, out] (nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out])."""
    w = module.weight.detach().float()
    return w if conv1d else w.T


def _norm_weight(norm: nn.Module) -> torch.Tensor | None:
    """The elementwise scale a pre-norm applies (Gemma's RMSNorm uses 1 + weight)."""
    w = getattr(norm, "weight", None)
    if w is None:
        return None
    w = w.detach().float()
    return 1.0 + w if type(norm).__name__.startswith("Gemma") else w


def head_weights(model, layer: int, *, fold_norm: bool = True) -> HeadWeights:
    """The attention weights of `layer`, split per head (see `HeadWeights` for shapes)."""
    c, a = model.cfg, model.adapter
    if not 0 <= layer < c.n_layers:
        raise ThoughtlensError(f"layer {layer} is out of range: the model has layers 0..{c.n_layers - 1}")
    if a.qkv_proj:  # fused: split the [d_model, fused] weight with the adapter's own activation layout
        q, k, v = a.split_qkv(_linear_in_out(model.submodule(a.qkv_proj, layer=layer), a.conv1d), c)
    else:
        q, k, v = (
            _linear_in_out(model.submodule(p, layer=layer), a.conv1d).unflatten(-1, (-1, c.d_head))
            for p in (a.q_proj, a.k_proj, a.v_proj)
        )
    # q, k, v: [d_model, heads, d_head] -> [heads, d_model, d_head]; repeat kv heads for GQA
    n_rep = c.n_heads // k.shape[1]
    W_Q, W_K, W_V = (t.permute(1, 0, 2) for t in (q, k, v))
    W_K, W_V = W_K.repeat_interleave(n_rep, 0), W_V.repeat_interleave(n_rep, 0)
    if fold_norm:
        w = _norm_weight(model.submodule(a.ln1, layer=layer))
        if w is not None:
            W_Q, W_K, W_V = (w[None, :, None] * t for t in (W_Q, W_K, W_V))
    o_proj = model.submodule(a.o_proj, layer=layer)
    W_O = _linear_in_out(o_proj, a.conv1d).reshape(c.n_heads, c.d_head, c.d_model)
    b_O = o_proj.bias.detach().float() if getattr(o_proj, "bias", None) is not None else None
    return HeadWeights(W_Q, W_K, W_V, W_O, b_O)


class FactoredMatrix:
    """A matrix kept as the product A @ B of two thin factors, TransformerLens-style.

    A: [..., m, r], B: [..., r, n]. The full product [..., m, n] is never formed unless you ask for
    `.AB`; norms and singular values come from the r x r core (QR of each factor), so a
    576 x 576 rank-64 head circuit costs a 64 x 64 SVD.
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor):
        if A.shape[-1] != B.shape[-2]:
            raise ThoughtlensError(
                f"factor shapes {tuple(A.shape)} and {tuple(B.shape)} do not chain: A[..., m, r] @ B[..., r, n]"
            )
        self.A, self.B = A, B

    @property
    def AB(self) -> torch.Tensor:
        return self.A @ self.B

    @property
    def T(self) -> "FactoredMatrix":
        return FactoredMatrix(self.B.transpose(-1, -2), self.A.transpose(-1, -2))

    def __matmul__(self, other) -> "FactoredMatrix":
        if isinstance(other, FactoredMatrix):  # (A B)(C D) = A (B C D): keep the outer thin factors
            return FactoredMatrix(self.A, (self.B @ other.A) @ other.B)
        return FactoredMatrix(self.A, self.B @ other)

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """U [..., m, r], S [..., r], Vh [..., r, n] with A @ B = U diag(S) Vh, singular values descending."""
        Qa, Ra = torch.linalg.qr(self.A)  # A = Qa Ra
        Qb, Rb = torch.linalg.qr(self.B.transpose(-1, -2))  # B = Rb^T Qb^T
        U, S, Vh = torch.linalg.svd(Ra @ Rb.transpose(-1, -2))
        return Qa @ U, S, Vh @ Qb.transpose(-1, -2)

    @property
    def S(self) -> torch.Tensor:
        return self.svd()[1]

    def norm(self) -> torch.Tensor:
        """Frobenius norm [...] (from singular values, without the full product)."""
        return self.S.norm(dim=-1)

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.A.shape[:-1], self.B.shape[-1])

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={self.shape}, rank<={self.A.shape[-1]})"


def qk_circuit(model, layer: int, *, fold_norm: bool = True) -> FactoredMatrix:
    """W_Q @ W_K.T per head: [head, d_model, d_model] (RoPE ignored; see module docstring)."""
    w = head_weights(model, layer, fold_norm=fold_norm)
    return FactoredMatrix(w.W_Q, w.W_K.transpose(-1, -2))


def ov_circuit(model, layer: int, *, fold_norm: bool = True) -> FactoredMatrix:
    """W_V @ W_O per head: [head, d_model, d_model]."""
    w = head_weights(model, layer, fold_norm=fold_norm)
    return FactoredMatrix(w.W_V, w.W_O)


def composition_scores(model, *, fold_norm: bool = True) -> pd.DataFrame:
    """Q-, K- and V-composition of every head pair (earlier layer -> later layer), Elhage et al. (2021).

    score(kind) = ||W_A @ W_B||_F / (||W_A||_F ||W_B||_F) with W_A the earlier head's OV circuit and
    W_B the later head's QK circuit (Q: OV_A @ QK_B, its output feeds B's queries), QK_B transposed
    (K: OV_A @ QK_B.T, its output feeds B's keys), or OV circuit (V: OV_A @ OV_B). Rows: kind,
    src_layer, src_head, dst_layer, dst_head, score (in [0, 1]; random matrices give ~ sqrt(r / d)).
    """
    n = model.cfg.n_layers
    ov = [ov_circuit(model, L, fold_norm=fold_norm) for L in range(n)]
    qk = [qk_circuit(model, L, fold_norm=fold_norm) for L in range(n)]
    ov_norm, qk_norm = [m.norm() for m in ov], [m.norm() for m in qk]
    rows = []
    for L1 in range(n):
        # [src_head, 1, d, d] against [1, dst_head, d, d]: all head pairs at once
        src = FactoredMatrix(ov[L1].A[:, None], ov[L1].B[:, None])
        for L2 in range(L1 + 1, n):
            right = {"Q": (qk[L2], qk_norm[L2]), "K": (qk[L2].T, qk_norm[L2]), "V": (ov[L2], ov_norm[L2])}
            for kind, (mat, mat_norm) in right.items():
                prod = (src @ FactoredMatrix(mat.A[None], mat.B[None])).norm()  # [src_head, dst_head]
                score = prod / (ov_norm[L1][:, None] * mat_norm[None, :])
                for (h1, h2), s in _enumerate2(score):
                    rows.append((kind, L1, h1, L2, h2, s))
    return pd.DataFrame(rows, columns=["kind", "src_layer", "src_head", "dst_layer", "dst_head", "score"])


def _enumerate2(t: torch.Tensor):
    for i in range(t.shape[0]):
        for j in range(t.shape[1]):
            yield (i, j), float(t[i, j])


def top_singular_tokens(
    model, layer: int, head: int, *, circuit: str = "ov", k: int = 3, n_tokens: int = 8
) -> pd.DataFrame:
    """The top-k singular directions of one head's OV or QK circuit, read as tokens.

    OV: the input direction U[:, i] is read against the token embeddings (which tokens the head reads)
    and the output direction Vh[i] against the unembedding (which logits it writes). QK: the left
    direction is the query side, the right direction the key side, both read against the embeddings.
    Returns rows: rank, singular_value, side ("in"/"out" or "query"/"key"), tokens (list of strings).
    """
    if circuit not in ("ov", "qk"):
        raise ThoughtlensError(f"circuit must be 'ov' or 'qk', got {circuit!r}")
    if not 0 <= head < model.cfg.n_heads:
        raise ThoughtlensError(f"head {head} is out of range: layer {layer} has heads 0..{model.cfg.n_heads - 1}")
    mat = (ov_circuit if circuit == "ov" else qk_circuit)(model, layer)
    U, S, Vh = FactoredMatrix(mat.A[head], mat.B[head]).svd()
    W_E = model.W_E.detach().float()  # [vocab, d_model]
    W_U = model.lm_head.weight.detach().float()  # [vocab, d_model]
    right_side = W_U if circuit == "ov" else W_E
    names = ("in", "out") if circuit == "ov" else ("query", "key")
    rows = []
    for i in range(min(k, S.shape[0])):
        # Singular vectors have no sign; orient each so its largest token score is positive.
        for side, vec, table in ((names[0], U[:, i], W_E), (names[1], Vh[i], right_side)):
            scores = table @ vec
            if scores.max() < -scores.min():
                scores = -scores
            top = scores.topk(n_tokens).indices.tolist()
            rows.append((i, float(S[i]), side, _decode(model, top)))
    return pd.DataFrame(rows, columns=["rank", "singular_value", "side", "tokens"])


def _decode(model, ids: list[int]) -> list[str]:
    if model.tokenizer is None:
        return [str(i) for i in ids]
    return [model.tokenizer.decode([i]) for i in ids]
