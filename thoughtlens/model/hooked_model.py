"""HookedModel: a Hugging Face causal LM with TransformerLens-style hook points.

The wrapped model is HF's own (`model.hf_model`); hooks are PyTorch module hooks plus one
attention function, so logits with read-only hooks equal logits without them.

    model = thoughtlens.load()                      # bundled SmolLM2-135M-Instruct
    logits, cache = model.run_with_cache("The cat sat on the", names_filter="resid_post")
    with model.hooks([("blocks.3.attn.hook_z", ablate_head_0)]):
        text = model.generate("The cat sat on the", max_new_tokens=10)
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from thoughtlens.errors import HookError
from thoughtlens.model import attention
from thoughtlens.model.adapters import Adapter, ModelShape, adapter_for, get_module, model_shape
from thoughtlens.model.cache import ActivationCache
from thoughtlens.model.hook_points import HookFn, HookPoint, Site, attach, build_sites

NamesFilter = str | Sequence[str] | Callable[[str], bool] | None
TokensLike = str | Sequence[str] | torch.Tensor


class HookedModel(nn.Module):
    """A HF causal LM plus named hook points. Build it with `thoughtlens.load(...)`."""

    def __init__(self, hf_model: nn.Module, tokenizer=None, *, name: str | None = None):
        super().__init__()
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.name = name or getattr(hf_model.config, "_name_or_path", "") or type(hf_model).__name__
        self.adapter: Adapter = adapter_for(hf_model)
        self.cfg: ModelShape = model_shape(hf_model)
        # Interpretability needs gradients w.r.t. activations, not weights; frozen weights keep
        # forward passes from building autograd graphs over 100M+ parameters.
        hf_model.requires_grad_(False)
        hf_model.eval()
        self._install_attention()
        self._sites: dict[str, Site] = build_sites(hf_model, self.adapter, self.cfg)
        self.default_prepend_bos: bool = self._tokenizer_adds_bos()

    # ---- setup ---------------------------------------------------------------------------------------

    def _install_attention(self) -> None:
        """Route attention through thoughtlens' function; give each layer an (idle) control."""
        impl = attention.register()
        eager_default = not getattr(self.hf_model, "_supports_sdpa", True)
        self.hf_model.set_attn_implementation(impl)
        self._controls: list[attention.AttentionControl] = []
        for L, layer in enumerate(get_module(self.hf_model, self.adapter.layers)):
            ctl = attention.AttentionControl(layer=L, eager_default=eager_default)
            get_module(layer, self.adapter.attn)._thoughtlens_ctl = ctl
            self._controls.append(ctl)

    def attention_control(self, layer: int) -> attention.AttentionControl:
        """The control object of layer `layer`'s attention (for suppression and streaming analyses)."""
        return self._controls[layer]

    def _tokenizer_adds_bos(self) -> bool:
        tok = self.tokenizer
        if tok is None or tok.bos_token_id is None:
            return False
        return tok("a", add_special_tokens=True)["input_ids"][:1] == [tok.bos_token_id]

    # ---- hook names ----------------------------------------------------------------------------------

    @property
    def hook_names(self) -> list[str]:
        """Every hook point, in forward order."""
        return list(self._sites)

    def _site(self, name: str) -> Site:
        site = self._sites.get(name)
        if site is None:
            close = difflib.get_close_matches(name, self._sites, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "see model.hook_names"
            raise HookError(f"unknown hook name '{name}': {hint}")
        return site

    def _select(self, names_filter: NamesFilter) -> list[str]:
        """None = all; 'resid_post' = that point in every layer; a glob; a list of names; or a predicate."""
        if names_filter is None:
            return self.hook_names
        if callable(names_filter):
            return [n for n in self._sites if names_filter(n)]
        if isinstance(names_filter, str):
            if names_filter in self._sites:
                return [names_filter]
            pattern = names_filter if ("*" in names_filter or "." in names_filter) else f"*{names_filter}"
            found = [n for n in self._sites if fnmatch.fnmatchcase(n, pattern)]
            if not found:
                self._site(names_filter)  # raises with suggestions
            return found
        for n in names_filter:
            self._site(n)
        return list(names_filter)

    # ---- hooks -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator["HookedModel"]:
        """Attach hooks for the duration of the block; they are removed even if the block raises.

        `fwd_hooks`: [(hook_name, fn), ...] with `fn(tensor, hook) -> tensor | None`. A name may be a
        short name or glob ("resid_post", "blocks.*.attn.hook_z") to attach fn at every match.
        """
        handles = []
        try:
            for name, fn in fwd_hooks:
                for full in self._select(name):
                    site = self._site(full)
                    layer_module = None
                    if site.layer is not None:
                        layer_module = get_module(self.hf_model, self.adapter.layers)[site.layer]
                    handles += attach(site, fn, self.cfg, self.adapter, layer_module)
            yield self
        finally:
            for h in reversed(handles):
                h.remove()

    # ---- forward ---------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    def forward(self, tokens: TokensLike, attention_mask: torch.Tensor | None = None, **hf_kwargs) -> torch.Tensor:
        """logits: [batch, pos, d_vocab] for tokens [batch, pos] (or a string / list of strings)."""
        tokens = self.as_tokens(tokens)
        # Runs in the caller's grad mode: weights are frozen, so a graph is built only when a hook
        # asks for gradients on an activation (attribution patching).
        out = self.hf_model(input_ids=tokens, attention_mask=attention_mask, use_cache=False, **hf_kwargs)
        return out.logits

    def run_with_cache(
        self,
        tokens: TokensLike,
        names_filter: NamesFilter = None,
        *,
        positions: slice | Sequence[int] | int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        attention_mask: torch.Tensor | None = None,
        **hf_kwargs,
    ) -> tuple[torch.Tensor, ActivationCache]:
        """Run the model and keep activations.

        names_filter: which hooks to keep (see `hooks`); None keeps all, including every attention
            pattern, which forces explicit softmax in every layer. Prefer a filter.
        positions: keep only these sequence positions (query positions for patterns) to save memory.
        device / dtype: move / cast cached tensors as they are captured (e.g. device="cpu").
        Returns logits [batch, pos, d_vocab] and the cache.
        """
        store: dict[str, torch.Tensor] = {}
        index = _position_index(positions)

        def save(tensor: torch.Tensor, hook: HookPoint) -> None:
            t = tensor.detach()
            if index is not None:
                t = t[:, :, index] if hook.name.endswith("hook_pattern") else t[:, index]
            store[hook.name] = t.to(device=device or t.device, dtype=dtype or t.dtype)

        with self.hooks([(n, save) for n in self._select(names_filter)]):
            logits = self.forward(tokens, attention_mask=attention_mask, **hf_kwargs)
        return logits, ActivationCache({n: store[n] for n in self._sites if n in store})

    def run_with_hooks(self, tokens: TokensLike, fwd_hooks: Iterable[tuple[str, HookFn]], **kw) -> torch.Tensor:
        """forward() with hooks attached for this call only."""
        with self.hooks(fwd_hooks):
            return self.forward(tokens, **kw)

    @torch.no_grad()
    def generate(
        self,
        input: TokensLike,
        max_new_tokens: int = 64,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        **hf_kwargs,
    ) -> str | list[str] | torch.Tensor:
        """HF `generate`, with whatever hooks are attached by an enclosing `model.hooks(...)`.

        Hooks see only the new positions at each decoding step (the prompt once, then one token).
        A list of texts is left-padded (with an attention mask) so every row continues its own text.
        Returns text for text input (continuation only), tokens [batch, pos] for token input.
        """
        as_text = not isinstance(input, torch.Tensor)
        tokens = self.as_tokens(input)
        mask = torch.ones_like(tokens)
        if as_text and not isinstance(input, str) and len(input) > 1:
            tokens, mask = self._left_padded(list(input))
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, **hf_kwargs)
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        pad = self.tokenizer.pad_token_id if self.tokenizer is not None else None
        if pad is None and self.tokenizer is not None:
            pad = self.tokenizer.eos_token_id
        out = self.hf_model.generate(tokens, attention_mask=mask, pad_token_id=pad, **kwargs)
        if not as_text:
            return out
        texts = self.tokenizer.batch_decode(out[:, tokens.shape[1] :], skip_special_tokens=True)
        return texts[0] if isinstance(input, str) else texts

    def _left_padded(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [batch, pos] left-padded and attention mask [batch, pos] (1 = real token), for generation."""
        rows = [self.to_tokens(t)[0] for t in texts]
        width = max(len(r) for r in rows)
        tok = self._require_tokenizer()
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        tokens = torch.full((len(rows), width), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(tokens)
        for i, r in enumerate(rows):
            tokens[i, width - len(r) :] = r
            mask[i, width - len(r) :] = 1
        return tokens, mask

    # ---- tokens ----------------------------------------------------------------------------------------

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise HookError("this model has no tokenizer: pass token ids, or load it with thoughtlens.load(...)")
        return self.tokenizer

    def to_tokens(self, text: str | Sequence[str], prepend_bos: bool | None = None) -> torch.Tensor:
        """tokens: [batch, pos] on the model's device.

        BOS policy: by default a BOS token is present exactly when the model's own tokenizer adds
        one (`model.default_prepend_bos`), which is how the model was trained and how HF feeds it.
        `prepend_bos=True` / `False` forces it on / off. Text that already starts with the BOS token
        (chat templates such as DeepSeek-R1-Distill's write it) gets no second one.
        Lists are right-padded with the pad token.
        """
        tok = self._require_tokenizer()
        texts = [text] if isinstance(text, str) else list(text)
        want_bos = self.default_prepend_bos if prepend_bos is None else prepend_bos
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        if want_bos:
            if tok.bos_token_id is None:
                raise HookError(f"{self.name}'s tokenizer has no BOS token: use prepend_bos=False")
            ids = [x if x[:1] == [tok.bos_token_id] else [tok.bos_token_id, *x] for x in ids]
        width = max(len(x) for x in ids)
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        rows = [x + [pad] * (width - len(x)) for x in ids]
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def to_str_tokens(self, text_or_tokens: str | torch.Tensor, prepend_bos: bool | None = None) -> list[str]:
        """One string per token of one sequence."""
        tok = self._require_tokenizer()
        tokens = text_or_tokens if isinstance(text_or_tokens, torch.Tensor) else self.to_tokens(text_or_tokens, prepend_bos)
        if tokens.ndim == 2:
            if tokens.shape[0] != 1:
                raise HookError(f"to_str_tokens takes one sequence, got a batch of {tokens.shape[0]}: index it first")
            tokens = tokens[0]
        return [tok.decode([t]) for t in tokens.tolist()]

    def to_string(self, tokens: torch.Tensor) -> str | list[str]:
        tok = self._require_tokenizer()
        if tokens.ndim == 1:
            return tok.decode(tokens)
        return tok.batch_decode(tokens)

    def apply_chat_template(self, messages: str | list[dict], add_generation_prompt: bool = True, **kw) -> str:
        """Chat-formatted prompt text. A plain string becomes one user message."""
        tok = self._require_tokenizer()
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if not getattr(tok, "chat_template", None):
            raise HookError(f"{self.name} has no chat template: build the prompt text yourself")
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kw)

    def as_tokens(self, tokens: TokensLike) -> torch.Tensor:
        """tokens: [batch, pos] on the model's device, from text (via `to_tokens`) or from ids [pos] / [batch, pos]."""
        if isinstance(tokens, torch.Tensor):
            if tokens.ndim == 1:
                tokens = tokens[None]
            if tokens.ndim != 2 or tokens.dtype not in (torch.long, torch.int32, torch.int64):
                raise HookError(
                    f"tokens must be integer ids [batch, pos], got {tuple(tokens.shape)} {tokens.dtype}: "
                    "use model.to_tokens(text)"
                )
            return tokens.to(self.device)
        return self.to_tokens(tokens)

    _as_tokens = as_tokens  # old private name, kept for code written before it was public

    # ---- weights ---------------------------------------------------------------------------------------

    @property
    def W_E(self) -> torch.Tensor:
        """Token embedding matrix: [d_vocab, d_model] (a view of the model's own weight)."""
        return get_module(self.hf_model, self.adapter.embed).weight

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding matrix: [d_model, d_vocab] (a transposed view of the LM head's weight).

        Logits are `ln_final(resid) @ W_U` (+ the head's bias where the family has one; Gemma adds a final soft-cap).
        """
        return self.hf_model.get_output_embeddings().weight.T

    # ---- description -------------------------------------------------------------------------------------

    def hook_shapes(self, n_pos: int = 4) -> dict[str, tuple[int, ...]]:
        """Shape of every hook point for one sequence of `n_pos` tokens (runs the model once)."""
        tokens = torch.zeros(1, n_pos, dtype=torch.long, device=self.device)
        _, cache = self.run_with_cache(tokens)
        return {n: tuple(t.shape) for n, t in cache.items()}

    def __repr__(self) -> str:
        c = self.cfg
        return (
            f"HookedModel({self.name!r}, arch={self.adapter.name}, layers={c.n_layers}, d_model={c.d_model}, "
            f"heads={c.n_heads}/{c.n_kv_heads} kv, d_head={c.d_head}, d_mlp={c.d_mlp}, vocab={c.d_vocab}, "
            f"dtype={self.dtype})"
        )


def _position_index(positions) -> slice | torch.Tensor | None:
    if positions is None:
        return None
    if isinstance(positions, int):
        return slice(positions, positions + 1 if positions != -1 else None)
    if isinstance(positions, slice):
        return positions
    return torch.as_tensor(list(positions), dtype=torch.long)
