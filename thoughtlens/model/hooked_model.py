"""HookedModel: a Hugging Face causal LM with TransformerLens-style hook points.

The wrapped model is HF's own (`model.hf_model`); hooks are PyTorch module hooks plus one
attention function, so logits with read-only hooks equal logits without them. Code outside
`thoughtlens.model` reaches the HF model only through HookedModel's methods (`embed`, `run_body`,
`ln_final`, `unembed`, `run_cached`, `block`, `submodule`, ...), which keep HF's interface and each
family's quirks (final norms, logit soft-capping, module paths) in one place.

    model = thoughtlens.load()                      # bundled SmolLM2-135M-Instruct
    logits, cache = model.run_with_cache("The cat sat on the", names_filter="resid_post")
    with model.hooks([("blocks.3.attn.hook_z", ablate_head_0)]):
        text = model.generate("The cat sat on the", max_new_tokens=10)
"""

from __future__ import annotations

import contextlib
import copy as _copy
import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from thoughtlens.errors import HookError
from thoughtlens.model import attention
from thoughtlens.model.adapters import Adapter, ModelShape, adapter_for, get_module, has_module, model_shape
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
                    layer_module = None if site.layer is None else self.block(site.layer)
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
        tokens = (
            text_or_tokens if isinstance(text_or_tokens, torch.Tensor) else self.to_tokens(text_or_tokens, prepend_bos)
        )
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

    # ---- the forward in pieces ------------------------------------------------------------------------
    #
    # logits == unembed(ln_final(resid_post of the last block)), and run_body(tokens).last_hidden_state is
    # ln_final(resid_post of the last block): the causal LM's forward, split where analyses need to cut it.

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings: tokens [batch, pos] -> [batch, pos, d_model] (the value of `hook_embed`).

        What `run_body(embeds=...)` takes. The embedding module's own output: Gemma's scales by sqrt(d_model)
        here (so it is not W_E[tokens] there); position embeddings (GPT-2) are added inside the body.
        """
        return self.hf_model.get_input_embeddings()(tokens)

    def run_body(
        self,
        tokens: torch.Tensor | None = None,
        *,
        embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values=None,
        use_cache: bool = False,
    ):
        """The transformer body without the LM head (HF's base model), with whatever hooks are attached.

        tokens: [batch, pos] ids, or embeds: [batch, pos, d_model] from `embed` (pass exactly one).
        attention_mask: [batch, pos (+ cached)] 1 = real token; position_ids: [batch|1, pos] (default: after the cache).
        past_key_values: a transformers `Cache` holding earlier positions, extended in place when use_cache=True.
        Returns HF's `BaseModelOutputWithPast`: `.last_hidden_state` [batch, pos, d_model], final norm already
        applied (feed it to `unembed`), and `.past_key_values`, the cache (None unless use_cache; transformers
        >= 5.20 names it `.cache` and keeps the old name as an alias).
        """
        if (tokens is None) == (embeds is None):
            raise HookError("run_body takes token ids or embeddings: pass exactly one of tokens and embeds=")
        body = self.hf_model.base_model
        return body(
            input_ids=tokens,
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **{_cache_kwarg(body): past_key_values},
        )

    def ln_final(self, resid: torch.Tensor) -> torch.Tensor:
        """The final norm: resid [..., d_model] -> [..., d_model] (the identity where the family has none)."""
        if not has_module(self.hf_model, self.adapter.final_norm):
            return resid
        return get_module(self.hf_model, self.adapter.final_norm)(resid)

    def unembed(
        self, resid_final: torch.Tensor, *, dtype: torch.dtype | None = None, softcap: bool = True
    ) -> torch.Tensor:
        """Logits from the final-normed residual stream: [..., d_model] -> [..., d_vocab].

        The LM head (weight and bias, where the family has one), then the final logit soft-cap
        `cap * tanh(logits / cap)` where the config sets `final_logit_softcapping` (Gemma 2), as HF's forward
        does. dtype: cast the head's output first (e.g. torch.float32 for a bfloat16 model), so the soft-cap is
        computed in that precision. softcap=False returns the pre-cap logits (for linear decompositions).
        """
        logits = self.lm_head(resid_final)
        if dtype is not None:
            logits = logits.to(dtype)
        cap = self.final_logit_softcap
        if softcap and cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @property
    def final_logit_softcap(self) -> float | None:
        """The final logit soft-cap `unembed` applies (Gemma 2: 30.0), None where the family has none.

        Read from the config at each call, so setting `final_logit_softcapping = None` there turns it off.
        """
        cap = getattr(self.hf_model.config, "final_logit_softcapping", None)
        return cap or None

    def run_cached(self, tokens: torch.Tensor, past_key_values=None):
        """One forward of the causal LM with a KV cache, for incremental decoding (with any attached hooks).

        tokens: [batch, pos] ids following the cached positions. past_key_values: a transformers `Cache`, or None
        to start one. Returns HF's `CausalLMOutputWithPast`: `.logits` [batch, pos, d_vocab] and
        `.past_key_values`, the cache extended by these positions.
        """
        return _run_cached(self.hf_model, tokens, past_key_values)

    @property
    def generation_config(self):
        """HF's `GenerationConfig` of the model (eos_token_id, ...), or None."""
        return getattr(self.hf_model, "generation_config", None)

    # ---- modules and weights ---------------------------------------------------------------------------

    def block(self, layer: int) -> nn.Module:
        """Decoder layer `layer` (HF's module; its submodules are at the adapter's per-layer paths)."""
        return get_module(self.hf_model, self.adapter.layers)[layer]

    def submodule(self, path: str, layer: int | None = None) -> nn.Module:
        """The module at an adapter path: on the causal LM (layer=None; e.g. `model.adapter.final_norm`) or inside
        decoder layer `layer` (e.g. `model.submodule(model.adapter.o_proj, layer=3)`). AttributeError if absent."""
        return get_module(self.hf_model if layer is None else self.block(layer), path)

    def has_submodule(self, path: str, layer: int | None = None) -> bool:
        """Whether `submodule(path, layer)` exists."""
        return has_module(self.hf_model if layer is None else self.block(layer), path)

    @property
    def lm_head(self) -> nn.Module:
        """The unembedding module (HF's output embedding): weight [d_vocab, d_model], bias [d_vocab] or None.

        HF's own accessor finds it, because its attribute name varies by family and version.
        """
        return self.hf_model.get_output_embeddings()

    @property
    def W_E(self) -> torch.Tensor:
        """Token embedding matrix: [d_vocab, d_model] (a view of the model's own weight)."""
        return get_module(self.hf_model, self.adapter.embed).weight

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding matrix: [d_model, d_vocab] (a transposed view of the LM head's weight).

        Logits are `ln_final(resid) @ W_U + b_U`, soft-capped where the family caps them (see `unembed`).
        """
        return self.lm_head.weight.T

    @property
    def b_U(self) -> torch.Tensor | None:
        """The LM head's bias: [d_vocab], or None (most families have none)."""
        return getattr(self.lm_head, "bias", None)

    def named_weights(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of every weight, named as in the HF checkpoint ("model.layers.0.mlp.down_proj.weight")."""
        return self.hf_model.named_parameters()

    # ---- copies and saving -----------------------------------------------------------------------------

    def copy(self, *, untie_embeddings: bool = False) -> "HookedModel":
        """An independent HookedModel over a deep copy of the weights, for editing them without touching this one.

        Hooks of interventions open on this model are not carried over. untie_embeddings=True gives the copy
        an LM head of its own where it shares the token embedding's weight, so the embedding can be edited alone.
        """
        hf = _copy.deepcopy(self.hf_model)
        for m in hf.modules():
            m._forward_hooks.clear()
            m._forward_pre_hooks.clear()
        if untie_embeddings:
            out_emb, in_emb = hf.get_output_embeddings(), get_module(hf, self.adapter.embed)
            if out_emb is not None and out_emb.weight is in_emb.weight:
                out_emb.weight = nn.Parameter(in_emb.weight.detach().clone(), requires_grad=False)
            configs = (hf.config, getattr(hf.config, "get_text_config", lambda: hf.config)())
            for cfg in {id(c): c for c in configs}.values():
                cfg.tie_word_embeddings = False
        return HookedModel(hf, self.tokenizer, name=self.name)

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write the model (safetensors + config) and its tokenizer to `out_dir`; returns the directory.

        Saved with HF's own attention implementation (SDPA, or eager where the family has no SDPA), so plain
        transformers opens it as well as `thoughtlens.load(out_dir)`.
        """
        out = Path(out_dir)
        self.hf_model.set_attn_implementation("sdpa" if getattr(self.hf_model, "_supports_sdpa", True) else "eager")
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.hf_model.save_pretrained(out)
        finally:
            self.hf_model.set_attn_implementation(attention.register())
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(out)
        return out

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


class PlainCausalLM:
    """A plain Hugging Face causal LM behind the part of HookedModel's interface that decoding needs
    (`__call__` -> logits, `run_cached`, `generation_config`, `device`, `tokenizer`), without hook points.

    For code that accepts a HookedModel or an unwrapped HF model (see `as_causal_lm`).
    """

    def __init__(self, hf_model: nn.Module, tokenizer=None):
        self.hf_model = hf_model
        self.tokenizer = tokenizer if tokenizer is not None else getattr(hf_model, "tokenizer", None)

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def generation_config(self):
        """HF's `GenerationConfig` of the model, or None."""
        return getattr(self.hf_model, "generation_config", None)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """logits: [batch, pos, d_vocab] for tokens [batch, pos]."""
        return self.hf_model(input_ids=tokens.to(self.device)).logits

    def run_cached(self, tokens: torch.Tensor, past_key_values=None):
        """As `HookedModel.run_cached`: HF's output (`.logits`, `.past_key_values`) of one cached forward."""
        return _run_cached(self.hf_model, tokens, past_key_values)


def as_causal_lm(model) -> HookedModel | PlainCausalLM:
    """`model` itself if it is a HookedModel; a plain HF causal LM wrapped in a `PlainCausalLM`."""
    return model if isinstance(model, HookedModel) else PlainCausalLM(model)


def hf_causal_lm(model) -> nn.Module:
    """The Hugging Face causal LM a HookedModel wraps (`model` itself when it is not a HookedModel), for handing
    it to code that takes HF models (`save_pretrained`, a new wrapper). Analyses use HookedModel's methods."""
    return model.hf_model if isinstance(model, HookedModel) else model


def _cache_kwarg(module: nn.Module) -> str:
    """The name of a HF forward's KV cache argument: `cache` from transformers 5.20 on, `past_key_values` before."""
    return _cache_kwarg_of(type(module))


@functools.lru_cache(maxsize=None)
def _cache_kwarg_of(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def _run_cached(hf_model: nn.Module, tokens: torch.Tensor, past_key_values):
    return hf_model(input_ids=tokens, use_cache=True, **{_cache_kwarg(hf_model): past_key_values})


def _position_index(positions) -> slice | torch.Tensor | None:
    if positions is None:
        return None
    if isinstance(positions, int):
        return slice(positions, positions + 1 if positions != -1 else None)
    if isinstance(positions, slice):
        return positions
    return torch.as_tensor(list(positions), dtype=torch.long)
