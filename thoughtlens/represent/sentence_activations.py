"""Activations per sentence: chosen hooks' activations reduced over each sentence's tokens, streamed.

    acts = sentence_activations(model, text, spans, hooks="resid_post", meta={"trace_id": "p330"})
    acts.values["mean"]   # [n_hooks, n_sentences, d]: mean over the sentence's tokens
    acts.values["last"]   # [n_hooks, n_sentences, d]: the sentence's last token
    acts.to_parquet("acts.parquet")

Streaming: the trace runs in chunks of `chunk_tokens` positions (chunked prefill through the KV cache:
attention scores are [heads, chunk, T], not [heads, T, T]); each hook adds its chunk's activation
[1, chunk, d] into per-sentence sums [S, d] the moment the layer has run (`weights[chunk].T @ act`,
weights [T, S] = 1/len(sentence) on the sentence's tokens), so a sentence straddling chunks gets its exact
mean, and its last token is taken from whichever chunk holds it. A 4,096-token trace never holds more than
one layer's [chunk, d] block, the KV cache of the hooked layers and the [n_hooks, S, d] results. Each
forward stops after the last hooked layer and never computes logits ([T, vocab] would be ~800 MB at 4k).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import DynamicCache

from thoughtlens.errors import ConfigError, HookError

REDUCTIONS = ("mean", "last")
ProgressFn = Callable[[int], None]


@dataclass
class SentenceActivations:
    """Per-sentence activations of several hooks, with one metadata row per sentence.

    hooks: full hook names, in the order of axis 0 of every array.
    values: reduction ("mean" | "last") -> float32 [n_hooks, n_sentences, d].
    meta: one row per sentence (at least `trace_id`, `sentence_index`; plus whatever the caller gave:
        category, importance metrics, ...).
    """

    hooks: list[str]
    values: dict[str, np.ndarray]
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n_sentences(self) -> int:
        return len(self.meta)

    def get(self, hook: str | int, reduction: str = "mean") -> np.ndarray:
        """[n_sentences, d] for one hook (full name, or a layer index when each hook is in its own layer)."""
        if reduction not in self.values:
            raise ConfigError(f"reduction '{reduction}' was not computed: use one of {', '.join(self.values)}")
        if isinstance(hook, int):
            matches = [i for i, h in enumerate(self.hooks) if h.startswith(f"blocks.{hook}.")]
            if len(matches) != 1:
                layers = sorted({int(h.split(".")[1]) for h in self.hooks if h.startswith("blocks.")})
                raise ConfigError(
                    f"layer {hook} is not among the collected layers {layers}: collect it, or pick one of them"
                )
            return self.values[reduction][matches[0]]
        if hook not in self.hooks:
            raise ConfigError(
                f"hook '{hook}' was not collected (collected: {', '.join(self.hooks[:4])}...): collect it first"
            )
        return self.values[reduction][self.hooks.index(hook)]

    def layers(self) -> list[int]:
        return [int(h.split(".")[1]) for h in self.hooks if h.startswith("blocks.")]

    @staticmethod
    def concat(parts: Sequence["SentenceActivations"]) -> "SentenceActivations":
        """Stack the sentences of several traces (same hooks and reductions)."""
        if not parts:
            raise ConfigError("nothing to concatenate: collect at least one trace")
        hooks = parts[0].hooks
        if any(p.hooks != hooks for p in parts):
            raise ConfigError("the parts were collected at different hooks: collect every trace with the same hooks")
        values = {r: np.concatenate([p.values[r] for p in parts], axis=1) for r in parts[0].values}
        return SentenceActivations(hooks, values, pd.concat([p.meta for p in parts], ignore_index=True))

    def to_npz(self, path: str | Path) -> None:
        """NumPy archive: one array per reduction, plus hooks and the metadata as JSON."""
        np.savez(
            path,
            hooks=np.array(self.hooks),
            meta=np.array(self.meta.to_json(orient="records")),
            **{f"values_{r}": v for r, v in self.values.items()},
        )

    @staticmethod
    def from_npz(path: str | Path) -> "SentenceActivations":
        with np.load(path, allow_pickle=False) as z:
            values = {k.removeprefix("values_"): z[k] for k in z.files if k.startswith("values_")}
            meta = pd.read_json(__import__("io").StringIO(str(z["meta"])), orient="records")
            return SentenceActivations([str(h) for h in z["hooks"]], values, meta)

    def to_parquet(self, path: str | Path) -> None:
        """One row per sentence: metadata columns plus one list<float32> column per (reduction, hook)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.meta.reset_index(drop=True), preserve_index=False)
        for r, v in self.values.items():
            for i, h in enumerate(self.hooks):
                arr = pa.FixedSizeListArray.from_arrays(pa.array(v[i].reshape(-1), pa.float32()), v.shape[-1])
                table = table.append_column(f"{r}:{h}", arr)
        pq.write_table(table, path)


class _Stop(Exception):
    """Raised by the last needed hook: the rest of the forward (and the logits) is not needed."""


def token_ranges(
    model, text: str, spans: Sequence[tuple[int, int]], max_tokens: int | None = None
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Tokenize `text` as the model reads it and map character spans to token ranges.

    Returns tokens [1, T] (BOS included when the model wants one) and one [start, end) token range per
    span: the tokens whose first character lies in the span. max_tokens cuts the tokens (sentences past the
    cut get empty ranges, those cut in the middle keep their first part).
    """
    tok = model.tokenizer
    if tok is None:
        raise HookError("this model has no tokenizer: load it with thoughtlens.load(...)")
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [a for a, _ in enc["offset_mapping"]]
    if model.default_prepend_bos and tok.bos_token_id is not None and ids[:1] != [tok.bos_token_id]:
        ids, offsets = [tok.bos_token_id, *ids], [-1, *offsets]
    if max_tokens is not None:
        ids, offsets = ids[:max_tokens], offsets[:max_tokens]
    starts = np.asarray(offsets)
    ranges = []
    for a, b in spans:
        inside = np.flatnonzero((starts >= a) & (starts < b))
        ranges.append((int(inside[0]), int(inside[-1]) + 1) if len(inside) else (len(ids), len(ids)))
    return torch.tensor([ids], dtype=torch.long), ranges


def sentence_activations(
    model,
    tokens: torch.Tensor,
    ranges: Sequence[tuple[int, int]],
    *,
    hooks: str | Sequence[str] = "resid_post",
    reductions: Sequence[str] = REDUCTIONS,
    meta: Mapping[str, object] | pd.DataFrame | None = None,
    chunk_tokens: int | None = 1024,
    texts: Sequence[str] | None = None,
) -> SentenceActivations:
    """Per-sentence reductions of `hooks` for one trace.

    tokens: [T] or [1, T] ids as the model reads them; ranges: S [start, end) token ranges (sorted,
    non-overlapping; an empty range gives NaN rows). hooks: names / short name / glob (every match is
    collected; each must have a [batch, pos, d] activation). reductions: "mean" and / or "last".
    meta: columns added to every sentence row (a dict of scalars), or a DataFrame with one row per sentence.
    chunk_tokens: positions per forward (chunked prefill through the KV cache, so attention never sees more
    than [heads, chunk, T] scores at once); each chunk's activations are added into the per-sentence sums as
    they arrive, so a sentence that straddles chunks gets the same mean and last token as in one pass.
    None = the whole trace in one forward. texts: the sentences' text, one per range, stored as column
    "text" (what a probe's control task reads: `represent probe --control`).
    """
    from thoughtlens.anchors.attention.sentence_attention import check_token_ranges, sentence_weights

    if texts is not None and (isinstance(texts, str) or len(texts) != len(ranges)):
        n = 1 if isinstance(texts, str) else len(texts)
        raise ConfigError(f"texts has {n} entries for {len(ranges)} sentences: pass one text per token range")
    bad = [r for r in reductions if r not in REDUCTIONS]
    if bad or not reductions:
        raise ConfigError(f"unknown reductions {bad or '[]'}: use any of {', '.join(REDUCTIONS)}")
    if chunk_tokens is not None and (
        isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1
    ):
        raise ConfigError(f"chunk_tokens must be a positive number of tokens or None (one pass), got {chunk_tokens!r}")
    names = model._select(hooks) if isinstance(hooks, str) else [n for h in hooks for n in model._select(h)]
    if any(n.endswith("hook_pattern") for n in names):
        raise HookError(
            "attention patterns have no per-token vector: use thoughtlens.anchors.attention.sentence_attention"
        )
    tokens = torch.as_tensor(tokens)
    tokens = tokens[None] if tokens.ndim == 1 else tokens
    if tokens.ndim != 2 or tokens.shape[0] != 1:
        raise ConfigError(
            f"tokens must be one sequence [T] or [1, T], got {tuple(tokens.shape)}: collect traces one at a time"
        )
    n_tok = tokens.shape[1]
    ranges = check_token_ranges(ranges, n_tok)
    last = max(b for _, b in ranges)
    weights = sentence_weights(ranges, last).to(model.device)  # [T, S]
    last_idx = torch.tensor([max(b - 1, 0) for _, b in ranges], device=model.device)  # [S]
    empty = np.array([a == b for a, b in ranges])
    sums: dict[str, list[torch.Tensor | None]] = {r: [None] * len(names) for r in reductions}  # r -> [S, d] per hook
    index = {n: i for i, n in enumerate(names)}
    order = model.hook_names
    final = max(names, key=order.index)  # the last hook the forward reaches
    step = last if chunk_tokens is None else chunk_tokens
    window = {"start": 0, "end": last}  # the positions of the chunk being run

    def reduce(act: torch.Tensor, hook) -> None:
        a = act[0].float().reshape(act.shape[1], -1)  # [chunk, d] (per-head hooks flattened)
        i, lo, hi = index[hook.name], window["start"], window["end"]
        for r in reductions:
            if sums[r][i] is None:
                sums[r][i] = torch.zeros(len(ranges), a.shape[-1], device=a.device)
        if "mean" in sums:
            sums["mean"][i] += weights[lo:hi].T @ a  # [S, chunk] @ [chunk, d]: this chunk's share of each mean
        if "last" in sums:
            here = (last_idx >= lo) & (last_idx < hi)  # sentences whose last token is in this chunk
            sums["last"][i][here] = a[last_idx[here] - lo]
        if hook.name == final:
            raise _Stop

    # The forward stops at the final hook, so layers past it never fill their cache, and never need to.
    cache = DynamicCache() if step < last else None
    with torch.no_grad(), model.hooks([(n, reduce) for n in names]):
        for lo in range(0, last, step):
            hi = min(lo + step, last)
            window.update(start=lo, end=hi)
            # positions explicit: when the final hook comes before layer 0's attention the cache stays empty
            positions = torch.arange(lo, hi, device=model.device)[None]
            try:
                model.run_body(
                    tokens[:, lo:hi].to(model.device),
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=cache is not None,
                )
            except _Stop:
                pass
            if cache is not None and cache.get_seq_length() != hi:
                cache = None  # nothing before the final hook attends: the chunks are independent
    widths = sorted({a.shape[-1] for a in sums[reductions[0]]})
    if len(widths) > 1:
        raise ConfigError(
            f"the hooks have different widths {widths}: collect hooks of one width per call "
            "(e.g. the residual stream, attn_out and mlp_out together, mlp.hook_post apart)"
        )
    values = {}
    for r, arrays in sums.items():
        v = torch.stack(arrays).cpu().numpy().astype(np.float32)  # [n_hooks, S, d]
        v[:, empty] = np.nan
        values[r] = v
    rows = pd.DataFrame(
        {
            "sentence_index": np.arange(len(ranges)),
            "tok_start": [a for a, _ in ranges],
            "tok_end": [b for _, b in ranges],
        }
    )
    if isinstance(meta, pd.DataFrame):
        if len(meta) != len(ranges):
            raise ConfigError(f"meta has {len(meta)} rows for {len(ranges)} sentences: pass one row per sentence")
        rows = pd.concat([rows, meta.reset_index(drop=True)], axis=1)
    elif meta:
        for k, v in meta.items():
            rows[k] = v
    if texts is not None:
        rows["text"] = [str(t) for t in texts]
    return SentenceActivations(names, values, rows)


def collect(
    model,
    items: Iterable[tuple[str, str, Sequence[tuple[int, int]], pd.DataFrame | Mapping | None]],
    *,
    hooks: str | Sequence[str] = "resid_post",
    reductions: Sequence[str] = REDUCTIONS,
    max_tokens: int | None = 4096,
    chunk_tokens: int | None = 1024,
    cache_dir: str | Path | None = None,
    on_progress: ProgressFn | None = None,
) -> SentenceActivations:
    """Sentence activations of many traces. items: (trace_id, text, char spans, meta) per trace.

    cache_dir: one .npz per trace is written there and reused, so an interrupted collection resumes.
    on_progress(1) after each trace. chunk_tokens: as in `sentence_activations`.
    """
    parts = []
    for trace_id, text, spans, meta in items:
        path = Path(cache_dir) / f"{trace_id.replace('/', '__')}.npz" if cache_dir else None
        if path is not None and path.exists():
            parts.append(SentenceActivations.from_npz(path))
        else:
            tokens, ranges = token_ranges(model, text, spans, max_tokens)
            keep = [i for i, (a, b) in enumerate(ranges) if b > a]
            if not keep:
                continue
            if isinstance(meta, pd.DataFrame):
                meta = meta.iloc[keep].reset_index(drop=True)
            has_text = isinstance(meta, pd.DataFrame) and "text" in meta or isinstance(meta, Mapping) and "text" in meta
            acts = sentence_activations(
                model,
                tokens,
                [ranges[i] for i in keep],
                hooks=hooks,
                reductions=reductions,
                meta=meta,
                chunk_tokens=chunk_tokens,
                texts=None if has_text else [text[spans[i][0] : spans[i][1]] for i in keep],
            )
            acts.meta["trace_id"] = trace_id
            acts.meta["sentence_index"] = keep
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npz")
                acts.to_npz(tmp)
                tmp.rename(path)  # atomic: a half-written file is never read back
            parts.append(acts)
        if on_progress is not None:
            on_progress(1)
    return SentenceActivations.concat(parts)
