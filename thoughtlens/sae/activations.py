"""Activation source: stream one or more hook points of a HookedModel over a text corpus into a
shuffling buffer of bounded memory, optionally caching them as safetensors shards so that one pass of
the model feeds several SAEs (and later runs read the shards instead of running the model).

    texts = read_corpus("gsm8k")                         # or a .txt / .jsonl / .parquet path
    source = ActivationSource(model, "blocks.15.hook_resid_post", texts, max_tokens=200_000,
                              cache_dir="runs/acts_l15")
    for batch in source:                                 # batch: [batch_size, d] float32, shuffled
        ...

Tokenisation follows SAELens's activation store: documents are joined with EOS and cut into
windows of `context_size`, each starting with BOS; the BOS position is left out of the activations by
default (`exclude_bos`), because a BOS residual is an attention sink whose norm is orders of magnitude
above the rest and would dominate the reconstruction loss. The forward stops right after the last
hook needed (as TransformerLens's `stop_at_layer`), so a middle-layer source costs half a forward.

Mixing: the buffer holds `buffer_size` activations; when full it is shuffled, its first half is
served in batches and refilled from the stream (SAELens `ActivationsStore` mixing). Peak memory is
`buffer_size * d * 4` bytes plus one model batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from thoughtlens.errors import SAEError
from thoughtlens.files import output_modes
from thoughtlens.progress import OnProgress, Tracker
from thoughtlens.sae.base import check_finite

SHARED_DATA = Path(
    os.environ.get("THOUGHTLENS_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data")
)
GSM8K = SHARED_DATA / "gsm8k" / "test.jsonl"


class _StopForward(Exception):
    """Raised from the last hook a source needs, so the rest of the forward is skipped."""


def read_corpus(
    source: str | os.PathLike | Sequence[str], column: str | None = None, limit: int | None = None
) -> list[str]:
    """Documents from: a list of strings; "gsm8k" (the shared GSM8K test set: question + worked answer);
    a .txt file (blank-line separated documents); .jsonl (field `column`, default "text", or GSM8K's
    question + answer); .parquet (column `column`, default "text")."""
    if not isinstance(source, (str, os.PathLike)):
        docs = [str(t) for t in source]
    else:
        path = GSM8K if str(source) == "gsm8k" else Path(source)
        if not path.is_file():
            hint = " (the shared data is not mounted; pass a text file)" if str(source) == "gsm8k" else ""
            raise SAEError(f"corpus {path} not found{hint}: pass a .txt, .jsonl or .parquet file")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            docs = []
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                if column is None and "question" in row and "answer" in row:
                    docs.append(f"{row['question']}\n{row['answer']}")
                else:
                    key = column or "text"
                    if key not in row:
                        raise SAEError(
                            f"{path}: rows have no field {key!r} (fields: {', '.join(row)}); pass column=..."
                        )
                    docs.append(str(row[key]))
        elif suffix == ".parquet":
            import pandas as pd

            df = pd.read_parquet(path)
            key = column or "text"
            if key not in df.columns:
                raise SAEError(
                    f"{path}: no column {key!r} (columns: {', '.join(map(str, df.columns))}); pass column=..."
                )
            docs = [str(t) for t in df[key].dropna()]
        else:
            docs = [d.strip() for d in path.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    docs = [d for d in docs if d.strip()]
    if limit is not None:
        docs = docs[:limit]
    if not docs:
        raise SAEError("the corpus is empty: pass at least one non-empty document")
    return docs


def token_windows(tokenizer, texts: Iterable[str], context_size: int) -> Iterator[list[int]]:
    """Windows of `context_size` token ids, each BOS + (context_size - 1) tokens of the EOS-joined corpus."""
    if context_size < 2:
        raise SAEError(f"context_size must be at least 2, got {context_size}")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    pending: list[int] = []
    for text in texts:
        pending += tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        while len(pending) >= context_size - 1:
            yield [bos, *pending[: context_size - 1]]
            pending = pending[context_size - 1 :]


def hook_widths(model, hook_names: Sequence[str]) -> list[int]:
    """Width of each hook's last dimension (flattened heads for [.., head, d_head] hooks)."""
    for name in hook_names:
        model._site(name)  # raises HookError with suggestions
    tokens = torch.zeros(1, 2, dtype=torch.long, device=model.device)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=list(hook_names))
    out = []
    for name in hook_names:
        shape = tuple(cache[name].shape)
        out.append(int(shape[-1] * (shape[-2] if len(shape) == 4 and not name.endswith("hook_pattern") else 1)))
    return out


def model_activations(model, tokens: torch.Tensor, hook_names: Sequence[str]) -> torch.Tensor:
    """acts: [batch, pos, sum(widths)] float32, the hooks' outputs concatenated in `hook_names` order.
    The forward stops after the last of them."""
    store: dict[str, torch.Tensor] = {}
    last = max(hook_names, key=lambda n: model.hook_names.index(n))

    def save(t: torch.Tensor, hook) -> None:
        store[hook.name] = t.detach().float().reshape(*t.shape[:2], -1)
        if hook.name == last and len(store) == len(hook_names):
            raise _StopForward

    with torch.no_grad(), model.hooks([(n, save) for n in hook_names]):
        try:
            model.forward(tokens)
        except _StopForward:
            pass
    return torch.cat([store[n] for n in hook_names], dim=-1)


class ActivationSource:
    """Shuffled batches of activations [batch_size, d] of `hook_names` (concatenated) over a corpus.

    model: a HookedModel (not needed when `cache_dir` already holds a complete cache).
    texts: documents (see `read_corpus`). max_tokens: stop after this many activations.
    buffer_size: activations held for shuffling (bounded memory); lowered to max_tokens (and to the size
        of a complete cache) when those are smaller. The corpus must give at least this many, or SAEError
        is raised before anything is written.
    cache_dir: read activations from here if it holds a complete cache for the same model, hooks and
        corpus; otherwise write one there during the first pass (atomically: a cache is either
        complete or absent).
    """

    def __init__(
        self,
        model,
        hook_names: str | Sequence[str],
        texts: Sequence[str] | None = None,
        *,
        context_size: int = 128,
        model_batch_size: int = 8,
        batch_size: int = 1024,
        buffer_size: int = 2**16,
        max_tokens: int | None = None,
        exclude_bos: bool = True,
        cache_dir: str | os.PathLike | None = None,
        shard_size: int = 2**14,
        seed: int = 0,
        on_progress: OnProgress | None = None,
    ):
        self.hook_names = [hook_names] if isinstance(hook_names, str) else list(hook_names)
        if not self.hook_names:
            raise SAEError("no hook names given: pass e.g. 'blocks.15.hook_resid_post'")
        if max_tokens is not None:
            if batch_size > 0 and max_tokens < 2 * batch_size:
                raise SAEError(
                    f"max_tokens ({max_tokens}) is fewer than two batches of batch_size={batch_size}: "
                    "raise max_tokens or lower batch_size"
                )
            buffer_size = min(buffer_size, max_tokens)  # a buffer larger than the stream never fills
        if batch_size <= 0 or buffer_size < 2 * batch_size:
            raise SAEError(f"buffer_size ({buffer_size}) must be at least twice batch_size ({batch_size})")
        self.model, self.texts = model, texts
        self.context_size, self.model_batch_size = context_size, model_batch_size
        self.batch_size, self.buffer_size = batch_size, buffer_size
        self.max_tokens, self.exclude_bos = max_tokens, exclude_bos
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.shard_size, self.seed, self.on_progress = shard_size, seed, on_progress
        meta = self._cached_meta()
        if meta is not None:
            self.widths = meta["widths"]
            self.model_name = meta.get("model_name", "")
            n_cached = int(meta.get("n_activations", self.buffer_size))
            if 2 * batch_size <= n_cached < self.buffer_size:  # a complete cache smaller than the buffer
                self.buffer_size = n_cached
        else:
            if model is None or texts is None:
                where = f" in {self.cache_dir}" if self.cache_dir else ""
                raise SAEError(f"no complete activation cache{where}: pass a model and texts to compute activations")
            for n in self.hook_names:
                model._site(n)
            self.widths = hook_widths(model, self.hook_names)
            self.model_name = getattr(model, "name", "")
        self.d = sum(self.widths)

    # ---- layout ----------------------------------------------------------------------------------------

    def slice_of(self, hook_name: str) -> slice:
        """Columns of a batch holding `hook_name`'s activation."""
        if hook_name not in self.hook_names:
            raise SAEError(f"this activation source streams {self.hook_names}, not {hook_name!r}: add it to hook_names")
        i = self.hook_names.index(hook_name)
        start = sum(self.widths[:i])
        return slice(start, start + self.widths[i])

    # ---- cache -----------------------------------------------------------------------------------------

    def _fingerprint(self) -> dict:
        h = hashlib.sha256()
        for t in self.texts or []:
            h.update(t.encode("utf-8", "replace"))
            h.update(b"\0")
        return {
            "hook_names": self.hook_names,
            "context_size": self.context_size,
            "exclude_bos": self.exclude_bos,
            "max_tokens": self.max_tokens,
            "corpus_sha256": h.hexdigest() if self.texts is not None else None,
        }

    def _cached_meta(self) -> dict | None:
        if self.cache_dir is None or not (self.cache_dir / "meta.json").is_file():
            return None
        meta = json.loads((self.cache_dir / "meta.json").read_text())
        want = self._fingerprint()
        for key in ("hook_names", "context_size", "exclude_bos", "max_tokens"):
            if meta.get(key) != want[key]:
                raise SAEError(
                    f"activation cache {self.cache_dir} holds {key}={meta.get(key)!r}, not {want[key]!r}: "
                    "use another cache_dir or delete this one"
                )
        if self.texts is not None and meta.get("corpus_sha256") != want["corpus_sha256"]:
            raise SAEError(
                f"activation cache {self.cache_dir} was built from another corpus: use another cache_dir or delete it"
            )
        return meta

    @property
    def cached(self) -> bool:
        return self._cached_meta() is not None

    # ---- streams -----------------------------------------------------------------------------------------

    def _activations(self, tokens: torch.Tensor) -> torch.Tensor:
        """acts: [batch, pos, d] for token windows [batch, pos] (a paired source overrides this)."""
        return model_activations(self.model, tokens, self.hook_names)

    def _model_chunks(self) -> Iterator[torch.Tensor]:
        """[n, d] float32 chunks straight from the model, in corpus order."""
        tracker = Tracker(
            self.on_progress, "activations", f"activations of {', '.join(self.hook_names)}", total=self.max_tokens
        )
        n = 0
        windows = token_windows(self.model.tokenizer, self.texts, self.context_size)
        while self.max_tokens is None or n < self.max_tokens:
            rows = [w for _, w in zip(range(self.model_batch_size), windows)]
            if not rows:
                break
            tokens = torch.tensor(rows, dtype=torch.long, device=self.model.device)
            acts = self._activations(tokens)
            if self.exclude_bos:
                acts = acts[:, 1:]
            acts = acts.reshape(-1, self.d)
            check_finite(acts, f"activations of {', '.join(self.hook_names)}")
            if self.max_tokens is not None:
                acts = acts[: self.max_tokens - n]
            n += len(acts)
            tracker.advance(len(acts))
            yield acts.cpu()

    def _cache_chunks(self, rng: torch.Generator) -> Iterator[torch.Tensor]:
        meta = self._cached_meta()
        order = torch.randperm(meta["n_shards"], generator=rng).tolist()
        for i in order:
            with safe_open(str(self.cache_dir / f"shard_{i:05d}.safetensors"), framework="pt") as f:
                yield f.get_tensor("activations").float()

    def _caching(self, chunks: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Pass chunks through while writing them as shards to a temporary dir; publish it at the end."""
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.cache_dir.name}.tmp-", dir=self.cache_dir.parent))
        pending, n_shards, n_total = [], 0, 0
        try:

            def flush(final: bool) -> None:
                nonlocal pending, n_shards
                data = torch.cat(pending) if pending else torch.empty(0, self.d)
                while len(data) >= self.shard_size or (final and len(data)):
                    shard, data = data[: self.shard_size], data[self.shard_size :]
                    save_file({"activations": shard.contiguous()}, str(tmp / f"shard_{n_shards:05d}.safetensors"))
                    n_shards += 1
                pending = [data] if len(data) else []

            for chunk in chunks:
                pending.append(chunk)
                n_total += len(chunk)
                if sum(len(p) for p in pending) >= self.shard_size:
                    flush(False)
                yield chunk
            flush(True)
            if n_total < self.buffer_size:  # checked before publishing: no cache for a corpus we refuse
                raise SAEError(
                    f"the corpus gave only {n_total} activations, fewer than buffer_size={self.buffer_size}: "
                    "lower buffer_size or add text (or raise max_tokens)"
                )
            meta = {
                **self._fingerprint(),
                "widths": self.widths,
                "model_name": self.model_name,
                "n_shards": n_shards,
                "n_activations": n_total,
                "shard_size": self.shard_size,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            output_modes(tmp)
            if self.cache_dir.exists():
                shutil.rmtree(self.cache_dir)
            os.replace(tmp, self.cache_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def chunks(self, rng: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Unshuffled [n, d] chunks: from the cache when complete, else from the model (caching them)."""
        rng = rng or torch.Generator().manual_seed(self.seed)
        if self.cached:
            yield from self._cache_chunks(rng)
        elif self.cache_dir is not None:
            yield from self._caching(self._model_chunks())
        else:
            yield from self._model_chunks()

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.batches()

    def batches(self, epoch: int = 0) -> Iterator[torch.Tensor]:
        """Shuffled batches [batch_size, d] (a last partial batch is dropped). Deterministic for a given
        seed and epoch when reading from a cache."""
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        buf = torch.empty(self.buffer_size, self.d)
        filled, first_fill = 0, True
        half = self.buffer_size // 2
        for chunk in self.chunks(rng):
            while len(chunk):
                take = min(len(chunk), self.buffer_size - filled)
                buf[filled : filled + take] = chunk[:take]
                filled += take
                chunk = chunk[take:]
                if filled == self.buffer_size:
                    first_fill = False
                    buf = buf[torch.randperm(self.buffer_size, generator=rng)]
                    for s in range(0, half - self.batch_size + 1, self.batch_size):
                        yield buf[s : s + self.batch_size].clone()
                    served = (half // self.batch_size) * self.batch_size
                    buf[: self.buffer_size - served] = buf[served:].clone()
                    filled = self.buffer_size - served
        if first_fill:
            raise SAEError(
                f"the corpus gave only {filled} activations, fewer than buffer_size={self.buffer_size}: "
                "lower buffer_size or add text (or raise max_tokens)"
            )
        rest = buf[:filled][torch.randperm(filled, generator=rng)]
        for s in range(0, filled - self.batch_size + 1, self.batch_size):  # full batches only (drop_last)
            yield rest[s : s + self.batch_size].clone()

    def sample(self, n: int) -> torch.Tensor:
        """n activations [n, d] for initialisation and scaling: the first n of the model's stream, or of
        shuffled shards when cached. With a cache_dir, this first writes the whole cache (one model pass)."""
        if not self.cached and self.cache_dir is not None:
            for _ in self.chunks():  # one full pass writes the cache; training then reads it, not the model
                pass
        out, got = [], 0
        rng = torch.Generator().manual_seed(self.seed)
        for chunk in self._cache_chunks(rng) if self.cached else self._model_chunks():
            out.append(chunk[: n - got])
            got += len(out[-1])
            if got >= n:
                break
        return torch.cat(out)


class TensorSource:
    """An in-memory activation source with the interface `train_saes` uses: activations [n, d] of one
    hook (or several, concatenated, with their `widths`), served in shuffled batches, epoch after epoch."""

    def __init__(
        self,
        activations: torch.Tensor,
        hook_names: str | Sequence[str],
        *,
        widths: Sequence[int] | None = None,
        batch_size: int = 1024,
        seed: int = 0,
    ):
        check_finite(activations, "the activations")
        if activations.ndim != 2:
            raise SAEError(f"activations must be [n, d], got shape {tuple(activations.shape)}")
        self.activations = activations.float()
        self.hook_names = [hook_names] if isinstance(hook_names, str) else list(hook_names)
        self.widths = list(widths) if widths is not None else [activations.shape[1]]
        if sum(self.widths) != activations.shape[1] or len(self.widths) != len(self.hook_names):
            raise SAEError(
                f"widths {self.widths} do not split {activations.shape[1]} columns over hooks {self.hook_names}"
            )
        self.d = activations.shape[1]
        self.batch_size, self.seed = batch_size, seed

    slice_of = ActivationSource.slice_of

    def batches(self, epoch: int = 0) -> Iterator[torch.Tensor]:
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.activations), generator=rng)
        for s in range(0, len(perm) - self.batch_size + 1, self.batch_size):
            yield self.activations[perm[s : s + self.batch_size]]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.batches()

    def sample(self, n: int) -> torch.Tensor:
        return self.activations[:n]
