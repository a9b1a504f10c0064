"""The logit lens, the residual stream split into components, and direct logit attribution (DLA).

Logit lens: each residual stream (the embeddings, then the output of every layer) goes through the
model's final norm and unembedding, as if the network stopped there. Caveat: early layers were
never trained to be read this way, so their lens logits are often meaningless even where the
information is present (a tuned lens would fix this with a learned map per layer).

DLA: the final residual stream is a sum of components (embeddings, every head, every MLP, biases),
so its logits are a sum too once the final norm is frozen. We fold the norm as TransformerLens
does: each component is centred (LayerNorm only), divided by the norm's scale *measured on the
real residual stream at that position*, and multiplied by the norm's weight. The components then
sum exactly to the logit (or logit difference) minus the norm's and unembedding's biases, which
are reported as their own rows. The approximation: a component's DLA is its share at the actual
scale; removing it would also change the scale, which DLA ignores.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from thoughtlens.circuits.weights import head_weights
from thoughtlens.errors import ThoughtlensError

# ---- the final norm, frozen -------------------------------------------------------------------------


@dataclass
class _FrozenNorm:
    """The final norm as an affine map at a fixed per-position scale.

    kind: "rms" (x / s * w), "layer" ((x - mean) / s * w + b) or "none" (identity).
    weight, bias: [d_model] fp32 (or None).
    """

    kind: str
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float

    def scale(self, resid: torch.Tensor) -> torch.Tensor:
        """s: [...] for resid [..., d_model], computed as the norm itself does (in fp32)."""
        x = resid.float()
        if self.kind == "none":
            return torch.ones(x.shape[:-1], device=x.device)
        if self.kind == "layer":
            x = x - x.mean(-1, keepdim=True)
        return (x.pow(2).mean(-1) + self.eps).sqrt()

    def apply_linear(self, component: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The norm's linear part on one component: [..., d_model] with scale [...] (no bias)."""
        x = component.float()
        if self.kind == "layer":
            x = x - x.mean(-1, keepdim=True)
        x = x / scale[..., None]
        return x * self.weight if self.weight is not None else x


def _frozen_final_norm(model) -> _FrozenNorm:
    """Read the final norm's parameters; a missing or Identity norm is kind "none"."""
    a = model.adapter
    norm = model.submodule(a.final_norm) if model.has_submodule(a.final_norm) else None
    if norm is None or isinstance(norm, nn.Identity):
        return _FrozenNorm("none", None, None, 0.0)
    weight = getattr(norm, "weight", None)
    weight = None if weight is None else weight.detach().float()
    name = type(norm).__name__
    if isinstance(norm, nn.LayerNorm):
        bias = None if norm.bias is None else norm.bias.detach().float()
        return _FrozenNorm("layer", weight, bias, norm.eps)
    if "RMSNorm" in name:
        if name.startswith("Gemma") and weight is not None:
            weight = 1.0 + weight  # Gemma's RMSNorm scales by (1 + weight)
        eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", 1e-6)
        return _FrozenNorm("rms", weight, None, eps)
    raise ThoughtlensError(
        f"final norm {name} is not a LayerNorm or RMSNorm, so it cannot be folded; "
        "replace it with torch.nn.Identity() to attribute without a norm"
    )


def _unembed(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """W_U: [d_vocab, d_model] and its bias [d_vocab] (or None), fp32."""
    bias = model.b_U
    return model.lm_head.weight.detach().float(), (None if bias is None else bias.detach().float())


def _check_no_softcap(model) -> None:
    cap = model.final_logit_softcap
    if cap:
        raise ThoughtlensError(
            f"{model.name} soft-caps its logits (tanh, cap {cap}), which is not a sum of components; "
            "set final_logit_softcapping = None in the model's config to attribute the pre-cap logits"
        )


# ---- logit lens ---------------------------------------------------------------------------------------


def logit_lens(model, tokens, *, pos: int | slice | None = -1) -> torch.Tensor:
    """lens logits: [layer + 1, batch, pos, d_vocab] (fp32).

    Row 0 reads the embeddings (blocks.0.hook_resid_pre), row L + 1 the output of layer L; the last
    row equals the model's logits. The model's own final norm and unembedding are applied (norm scale
    recomputed per stream, unlike DLA). `pos` keeps only those positions (default: the last one).
    """
    n = model.cfg.n_layers
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{L}.hook_resid_post" for L in range(n)]
    _, cache = model.run_with_cache(tokens, names_filter=names, positions=pos)
    with torch.no_grad():  # pre-cap logits: the lens reads each layer linearly, as it always has
        return torch.stack([model.unembed(model.ln_final(cache[name]), softcap=False).float() for name in names])


# ---- decomposition ----------------------------------------------------------------------------------


def _check_per_head(model) -> None:
    a = model.adapter
    if a.attn_out != a.attn:
        raise ThoughtlensError(
            f"{a.name} normalises attention outputs before the residual add (module {a.attn_out}), so heads "
            "do not add linearly; use by_head=False to split by layer"
        )


def decompose_resid(
    model, tokens, *, layer: int | None = None, by_head: bool = True, pos: int | slice | None = None
) -> tuple[torch.Tensor, list[str]]:
    """The residual stream entering `layer` (default: after the last layer) as a sum of components.

    Returns components: [component, batch, pos, d_model] (fp32) and one label per component:
    "embed" (blocks.0.hook_resid_pre: token + position embeddings, with any scaling), then per layer
    "L{l}H{h}" for each head (hook_z[:, :, h] @ W_O[h]) and "L{l}.attn_bias" (o_proj bias, if any),
    or "L{l}.attn" with by_head=False, then "L{l}.mlp" (hook_mlp_out). They sum to the stream up to the
    rounding of the model's own additions: per element at most eps(dtype) * (sum over the additions of
    |stream so far| + sum |parts|), largest where the stream carries a large value through many layers
    (the attention sink at position 0). Sum them in float64 to see only that.
    """
    comps, labels, _, _ = _decompose(model, tokens, layer=layer, by_head=by_head, pos=pos)
    return comps, labels


def _decompose(model, tokens, *, layer: int | None, by_head: bool, pos, keep: tuple[str, ...] = ()):
    """decompose_resid, plus the logits and the cache of the same forward pass (with `keep` cached too)."""
    n = model.cfg.n_layers
    layer = n if layer is None else layer
    if not 0 <= layer <= n:
        raise ThoughtlensError(f"layer {layer} is out of range: use 0..{n} (n = after the last layer)")
    if by_head:
        _check_per_head(model)
    names = ["blocks.0.hook_resid_pre"]
    for L in range(layer):
        names += [f"blocks.{L}.attn.hook_z" if by_head else f"blocks.{L}.hook_attn_out", f"blocks.{L}.hook_mlp_out"]
    with torch.no_grad():
        logits, cache = model.run_with_cache(
            tokens, names_filter=list(dict.fromkeys(names + list(keep))), positions=pos
        )
    parts, labels = [cache["blocks.0.hook_resid_pre"].float()], ["embed"]
    for L in range(layer):
        if by_head:
            w = head_weights(model, L)
            z = cache[f"blocks.{L}.attn.hook_z"].float()  # [batch, pos, head, d_head]
            parts += list(torch.einsum("bphd,hdm->hbpm", z, w.W_O))
            labels += [f"L{L}H{h}" for h in range(model.cfg.n_heads)]
            if w.b_O is not None:
                parts.append(w.b_O.expand_as(parts[0]))
                labels.append(f"L{L}.attn_bias")
        else:
            parts.append(cache[f"blocks.{L}.hook_attn_out"].float())
            labels.append(f"L{L}.attn")
        parts.append(cache[f"blocks.{L}.hook_mlp_out"].float())
        labels.append(f"L{L}.mlp")
    return torch.stack(parts), labels, logits, cache


# ---- direct logit attribution ----------------------------------------------------------------------


def _token_ids(model, ids, batch: int, what: str) -> torch.Tensor:
    """ids: an int, a token string, or one per prompt -> LongTensor [batch]."""
    if isinstance(ids, str):
        ids = _single_token(model, ids)
    t = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ThoughtlensError(f"{what} has {t.numel()} token ids for {batch} prompts: give one id, or one per prompt")
    if (t < 0).any() or (t >= model.cfg.d_vocab).any():
        raise ThoughtlensError(f"{what} holds ids outside the vocabulary 0..{model.cfg.d_vocab - 1}")
    return t


def _single_token(model, text: str) -> int:
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ThoughtlensError(
            f"{text!r} is {len(ids)} tokens, not one: pass a token id, or a string with a leading space like ' Mary'"
        )
    return ids[0]


def logit_direction(model, correct, wrong=None, batch: int = 1) -> torch.Tensor:
    """The unembedding direction of a logit (or logit difference): [batch, d_model] fp32.

    correct / wrong: token ids (one, or one per prompt) or single-token strings.
    """
    W_U, _ = _unembed(model)
    d = W_U[_token_ids(model, correct, batch, "correct")]
    if wrong is not None:
        d = d - W_U[_token_ids(model, wrong, batch, "wrong")]
    return d


def dla(model, tokens, correct, wrong=None, *, pos: int = -1, by_head: bool = True) -> pd.DataFrame:
    """Direct logit attribution of every component to logit[correct] (- logit[wrong]) at `pos`.

    Returns one row per component (as in `decompose_resid`) plus "ln_final.bias" and
    "unembed.bias" where present, with columns component, layer (-1 for non-layer rows), head (-1 if
    not a head), value (mean over the batch). The values sum to the model's logit (difference),
    averaged over the batch, up to the rounding of the model's dtype; `df.attrs["logit"]` holds that
    model value, read from the same forward pass as the components, for checking.
    """
    tokens = model.as_tokens(tokens)
    _check_no_softcap(model)
    batch = tokens.shape[0]
    direction = logit_direction(model, correct, wrong, batch)  # [batch, d_model]
    # The components, the real final stream and the logits all come from one forward pass.
    final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    comps, labels, logits, cache = _decompose(model, tokens, layer=None, by_head=by_head, pos=pos, keep=(final,))
    comps = comps[:, :, 0]  # [comp, batch, d_model]
    norm = _frozen_final_norm(model)
    scale = norm.scale(cache[final][:, 0])  # [batch]: the norm's scale on the real final stream
    values = (norm.apply_linear(comps, scale) * direction).sum(-1)  # [comp, batch]
    rows = [(lab, *_layer_head(lab), v) for lab, v in zip(labels, values.mean(1).tolist())]
    if norm.bias is not None:
        rows.append(("ln_final.bias", -1, -1, float((direction @ norm.bias).mean())))
    _, b_U = _unembed(model)
    if b_U is not None:
        rows.append(
            ("unembed.bias", -1, -1, float(_read_logits(model, b_U[None].expand(batch, -1), correct, wrong).mean()))
        )
    df = pd.DataFrame(rows, columns=["component", "layer", "head", "value"])
    df.attrs["logit"] = float(_read_logits(model, logits[:, pos].float(), correct, wrong).mean())
    return df


def _read_logits(model, logits: torch.Tensor, correct, wrong) -> torch.Tensor:
    """logits [batch, d_vocab] -> logit[correct] (- logit[wrong]): [batch]."""
    batch, rows = logits.shape[0], torch.arange(logits.shape[0])
    out = logits[rows, _token_ids(model, correct, batch, "correct")]
    if wrong is not None:
        out = out - logits[rows, _token_ids(model, wrong, batch, "wrong")]
    return out


def neuron_dla(model, tokens, correct, wrong=None, *, pos: int = -1, layers=None) -> pd.DataFrame:
    """DLA of every MLP neuron: hook_post[..., n] * W_down[:, n], folded like `dla`.

    Returns columns layer, neuron, value (batch mean): d_mlp neuron rows per layer, then one row with
    neuron = -1 for the down projection's bias (0.0 when it has none). Per layer, the rows sum to that
    layer's "L{l}.mlp" row of `dla`.
    """
    tokens = model.as_tokens(tokens)
    _check_no_softcap(model)
    a = model.adapter
    if a.mlp_out != a.mlp:
        raise ThoughtlensError(
            f"{a.name} normalises MLP outputs before the residual add, so neurons do not add linearly"
        )
    batch, n = tokens.shape[0], model.cfg.n_layers
    layers = list(range(n)) if layers is None else list(layers)
    direction = logit_direction(model, correct, wrong, batch)
    names = [f"blocks.{n - 1}.hook_resid_post"] + [f"blocks.{L}.mlp.hook_post" for L in layers]
    _, cache = model.run_with_cache(tokens, names_filter=names, positions=pos)
    norm = _frozen_final_norm(model)
    scale = norm.scale(cache[names[0]][:, 0])  # [batch]
    # The folded direction each neuron's output vector is read against: [batch, d_model]
    folded = norm.apply_linear(direction, scale) if norm.kind != "layer" else None
    frames = []
    for L in layers:
        down = model.submodule(a.mlp_down, layer=L)
        W_out = down.weight.detach().float() if a.conv1d else down.weight.detach().float().T  # [d_mlp, d_model]
        post = cache[f"blocks.{L}.mlp.hook_post"][:, 0].float()  # [batch, d_mlp]
        bias = getattr(down, "bias", None)
        b_out = (bias.detach().float() if bias is not None else torch.zeros(W_out.shape[1]))[None]  # [1, d_model]
        if folded is None:  # LayerNorm centres each component: centre the neuron output vectors
            vecs = norm.apply_linear(W_out[None], scale[:, None])  # [batch, d_mlp, d_model]
            value = post * (vecs * direction[:, None]).sum(-1)
            bias_value = (norm.apply_linear(b_out[None], scale[:, None])[:, 0] * direction).sum(-1)  # [batch]
        else:
            value = post * (W_out @ folded.T).T
            bias_value = (b_out @ folded.T)[0]  # [batch]
        frames.append(
            pd.DataFrame(
                {
                    "layer": L,
                    "neuron": [*range(post.shape[1]), -1],
                    "value": [*value.mean(0).numpy(), float(bias_value.mean())],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _layer_head(label: str) -> tuple[int, int]:
    if label == "embed":
        return -1, -1
    layer_part = label.split(".")[0][1:]
    if "H" in layer_part:
        L, h = layer_part.split("H")
        return int(L), int(h)
    return int(layer_part), -1
