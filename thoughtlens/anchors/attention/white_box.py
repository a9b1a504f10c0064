"""White-box thought anchors over a set of traces: receiver heads, receiver scores, suppression.

    model = thoughtlens.load()
    traces = {"p1": ReasoningTrace.parse(prompt, completion), ...}
    result = analyze_attention(model, traces, store=RunStore("runs/x.sqlite"), run_id="x")
    result.receiver.top[:5]        # [ReceiverHead(layer, head, kurtosis), ...]

Teacher-forced: each trace's text (prompt + completion) is run once for the sentence x sentence
attention of every head (streamed, see `sentence_attention`), then once per batch of suppressed
sentences (see `suppression`).

Store artifacts written (names read by the report page):
  per problem: "receiver_scores" [S], "vertical_scores" [layers, heads, S],
    "sentence_attention_top_heads" [{layer, head, kurtosis, matrix [S][S]}] (NaN -> null),
    "suppression_matrix" [S, S] (NaN where undefined), "suppression_meta" {temperature, heads, ...};
  per run: "receiver_head_kurtosis" [layers, heads] (mean over traces), "receiver_heads"
    [{layer, head, kurtosis}], "receiver_split_half_r" float | null, "receiver_meta" {parameters}.
Traces not yet in the store are added (problem text = the prompt unless `problems` gives one),
with their sentences and token ranges, so the report page can show them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from thoughtlens.anchors.attention.receiver_heads import (
    ReceiverHeadResult,
    find_receiver_heads,
    receiver_scores,
    vertical_scores,
)
from thoughtlens.anchors.attention.sentence_attention import attention_controls, sentence_attention
from thoughtlens.anchors.attention.suppression import HeadSubset, suppression_matrix
from thoughtlens.anchors.attention.suppression_approx import APPROX_METHODS, suppression_matrix_approx
from thoughtlens.errors import ConfigError, TraceError
from thoughtlens.jsonsafe import json_safe
from thoughtlens.progress import OnProgress, Tracker
from thoughtlens.trace.reasoning_trace import ReasoningTrace


@dataclass
class TraceTokens:
    """A trace as the model sees it. tokens: [T] ids (BOS included if the model uses one);
    ranges: per analysed sentence, [start, end) into tokens; n_dropped: sentences cut by max_tokens;
    bos: 1 when a BOS token was prepended (ranges are shifted by it), else 0."""

    tokens: torch.Tensor
    ranges: list[tuple[int, int]]
    n_dropped: int
    bos: int = 0


def trace_tokens(model, trace: ReasoningTrace, max_tokens: int | None = None) -> TraceTokens:
    """Token ids and sentence token ranges of `trace` for `model`.

    max_tokens: keep only the sentences that end within the first max_tokens tokens (for traces
    longer than the context, or to bound time and memory); the rest are dropped (n_dropped).
    """
    tok = model.tokenizer
    if tok is None:
        raise TraceError(f"{model.name} has no tokenizer: load it with thoughtlens.load(...) to analyse text traces")
    ids = tok(trace.text, add_special_tokens=False)["input_ids"]
    ranges = trace.token_ranges(tok)
    if model.default_prepend_bos:  # the model was trained with BOS first: feed it, shift ranges past it
        ids, ranges = [tok.bos_token_id, *ids], [(a + 1, b + 1) for a, b in ranges]
    bos = int(bool(model.default_prepend_bos))
    n = len(ranges)
    if max_tokens is not None:
        if max_tokens < 1:
            raise TraceError(f"max_tokens must be >= 1, got {max_tokens}")
        ranges = [r for r in ranges if r[1] <= max_tokens]
        ids = ids[:max_tokens]
        if not ranges:
            raise TraceError(f"no sentence ends within max_tokens={max_tokens} tokens: raise max_tokens")
    return TraceTokens(torch.tensor(ids, dtype=torch.long), ranges, n - len(ranges), bos)


@dataclass
class TraceAttention:
    """Per-trace results. vertical: [layers, heads, S]; kurtosis: [layers, heads]; receiver_scores: [S];
    suppression: [S, S] or None; head_matrices: the top heads' [S, S] sentence attention."""

    problem_id: str
    n_tokens: int
    n_sentences: int
    n_dropped: int
    vertical: np.ndarray
    kurtosis: np.ndarray
    receiver_scores: np.ndarray | None = None
    suppression: np.ndarray | None = None
    head_matrices: list[dict] = field(default_factory=list)


@dataclass
class WhiteBoxResult:
    receiver: ReceiverHeadResult
    traces: dict[str, TraceAttention]


def analyze_attention(
    model,
    traces: Mapping[str, ReasoningTrace] | Sequence[ReasoningTrace],
    *,
    store=None,
    run_id: str | None = None,
    problems: Mapping[str, Mapping] | None = None,
    proximity_ignore: int = 4,
    control_depth: bool = False,
    top_k: int = 20,
    exclude_layers: Sequence[int] = (0,),
    n_head_matrices: int = 5,
    suppression: bool = True,
    temperature: float = 0.6,
    kl_reduction: str = "paper",
    suppression_heads: HeadSubset | None = None,
    suppression_method: str = "exact",
    batch_size: int = 4,
    max_tokens: int | None = None,
    chunk_rows: int = 256,
    on_progress: OnProgress | None = None,
) -> WhiteBoxResult:
    """Receiver heads over `traces`, then per trace receiver scores and (optionally) the suppression matrix.

    traces: {problem_id: trace} or a list (ids "trace_0", "trace_1", ...).
    store, run_id: a RunStore and run to write into (both or neither); the run is created if absent.
    problems: optional {problem_id: {"problem": text, "gt_answer": str | None}} for traces added to the store.
    proximity_ignore, control_depth: see `vertical_scores`. top_k, exclude_layers: see `rank_heads`.
    n_head_matrices: how many top heads' sentence matrices to keep per trace (for the report page).
    suppression: compute suppression matrices (the costly part: ~S/2 forwards per trace).
    temperature, kl_reduction, suppression_heads, batch_size: see `suppression_matrix`.
    suppression_method: "exact" (the paper's S suppressed forwards, the default) or a first-order estimate from
    `anchors.attention.suppression_approx` ("direct_grad": one forward + one backward; "grad_loglik"); recorded in
    suppression_meta["method"]. An estimate ranks effects (scale of a unit attention bias), it is not the exact KL.
    max_tokens: analyse only the sentences within the first max_tokens tokens (see `trace_tokens`).
    chunk_rows: query rows per streamed softmax block. on_progress: receives `ProgressEvent`s (thoughtlens.progress).
    """
    methods = ("exact", *APPROX_METHODS)
    if suppression_method not in methods:
        raise ConfigError(f"unknown suppression_method {suppression_method!r}: use one of {', '.join(methods)}")
    if suppression_method != "exact" and suppression_heads is not None:
        raise ConfigError(
            f"suppression_heads needs suppression_method='exact' ({suppression_method!r} biases every "
            "head): drop suppression_heads or use the exact method"
        )
    attention_controls(model)  # fail before any work if the model cannot be intercepted
    if (store is None) != (run_id is None):
        raise TraceError("pass both store and run_id to write results, or neither")
    named = dict(traces) if isinstance(traces, Mapping) else {f"trace_{i}": t for i, t in enumerate(traces)}
    if not named:
        raise TraceError("no traces given: pass at least one ReasoningTrace")
    params = dict(
        model=model.name,
        proximity_ignore=proximity_ignore,
        control_depth=control_depth,
        top_k=top_k,
        exclude_layers=list(exclude_layers),
        max_tokens=max_tokens,
    )
    tokenized = {pid: trace_tokens(model, t, max_tokens) for pid, t in named.items()}
    for pid, tt in tokenized.items():
        if len(tt.ranges) <= proximity_ignore:
            cut = f" within max_tokens={max_tokens}" if max_tokens else ""
            raise TraceError(
                f"trace '{pid}' has {len(tt.ranges)} sentences{cut}, not more than "
                f"proximity_ignore={proximity_ignore}: drop it, raise max_tokens or lower proximity_ignore"
            )
    results, matrices = {}, {}
    attn_task = Tracker(on_progress, "sentence attention", "sentence attention", len(named) * model.cfg.n_layers)
    for pid, tt in tokenized.items():
        A = sentence_attention(model, tt.tokens, tt.ranges, chunk_rows=chunk_rows, on_progress=attn_task.advancer())
        vert = vertical_scores(A, proximity_ignore, control_depth)
        results[pid] = TraceAttention(pid, int(tt.tokens.shape[0]), len(tt.ranges), tt.n_dropped, vert, np.zeros(0))
        matrices[pid] = A
    receiver = find_receiver_heads([r.vertical for r in results.values()], top_k=top_k, exclude_layers=exclude_layers)
    for i, (pid, r) in enumerate(results.items()):
        r.kurtosis = receiver.per_trace_kurtosis[i]
        r.receiver_scores = receiver_scores(r.vertical, receiver.top)
        r.head_matrices = [
            {**h.as_dict(), "matrix": json_safe(matrices[pid][h.layer, h.head])} for h in receiver.top[:n_head_matrices]
        ]
    del matrices
    if store is not None:
        _write_receiver(store, run_id, params, named, tokenized, problems or {}, receiver, results)
    if suppression:
        supp_task = Tracker(
            on_progress,
            "attention suppression",
            "attention suppression",
            sum(len(tt.ranges) for tt in tokenized.values()),
        )
        meta = dict(
            temperature=temperature,
            kl_reduction=kl_reduction,
            heads=None if suppression_heads is None else [list(map(int, h)) for h in suppression_heads],
            max_tokens=max_tokens,
            model=model.name,
            method=suppression_method,
        )
        for pid, tt in tokenized.items():
            if suppression_method == "exact":
                results[pid].suppression = suppression_matrix(
                    model,
                    tt.tokens,
                    tt.ranges,
                    temperature=temperature,
                    kl_reduction=kl_reduction,
                    heads=suppression_heads,
                    batch_size=batch_size,
                    on_progress=supp_task.advancer(),
                )
            else:
                results[pid].suppression = suppression_matrix_approx(
                    model,
                    tt.tokens,
                    tt.ranges,
                    temperature=temperature,
                    method=suppression_method,
                    kl_reduction=kl_reduction,
                    batch_size=batch_size,
                    on_progress=supp_task.advancer(),
                )
            if store is not None:
                _write_suppression(store, run_id, pid, results[pid].suppression, named[pid], tt, meta)
    return WhiteBoxResult(receiver, results)


def _padded(values: np.ndarray, n: int, fill=np.nan) -> np.ndarray:
    """Pad the last axis (or both axes of a square matrix) to the trace's full sentence count n;
    sentences dropped by max_tokens get NaN, so stored arrays line up with the stored sentences."""
    if values.ndim == 2 and values.shape[0] == values.shape[1] and values.shape[0] < n:
        out = np.full((n, n), fill)
        out[: values.shape[0], : values.shape[1]] = values
        return out
    if values.shape[-1] < n:
        out = np.full(values.shape[:-1] + (n,), fill)
        out[..., : values.shape[-1]] = values
        return out
    return values


def _ensure_trace(store, run_id: str, pid: str, trace: ReasoningTrace, tt: TraceTokens, problem: Mapping) -> None:
    """Add the problem and its base trace to the store unless it already holds one (e.g. from a black-box run)."""
    if store.trace(run_id, pid) is not None:
        return
    store.add_problem(run_id, pid, problem.get("problem") or trace.prompt, problem.get("gt_answer"))
    shift = -tt.bos  # the store keeps ranges into tokenizer(text, add_special_tokens=False), without BOS
    ranges = tt.ranges + [(None, None)] * tt.n_dropped
    sentences = [
        {
            "index": s.index,
            "start": s.start,
            "end": s.end,
            "text": s.text,
            "tok_start": None if r[0] is None else r[0] + shift,
            "tok_end": None if r[1] is None else r[1] + shift,
            "tags": None,
        }
        for s, r in zip(trace.sentences, ranges)
    ]
    store.add_trace(run_id, pid, trace.prompt, trace.completion, trace.answer, None, sentences)


def _write_receiver(store, run_id, params, named, tokenized, problems, receiver: ReceiverHeadResult, results) -> None:
    if run_id not in {r["run_id"] for r in store.runs()}:
        store.create_run(run_id, {"kind": "white_box", **params})
    for pid, r in results.items():
        n = len(named[pid].sentences)
        _ensure_trace(store, run_id, pid, named[pid], tokenized[pid], problems.get(pid, {}))
        store.put_artifact(run_id, "receiver_scores", _padded(r.receiver_scores, n), pid)
        store.put_artifact(run_id, "vertical_scores", _padded(r.vertical, n).astype(np.float32), pid)
        heads = [{**h, "matrix": json_safe(_padded(np.array(h["matrix"], dtype=float), n))} for h in r.head_matrices]
        store.put_artifact(run_id, "sentence_attention_top_heads", heads, pid)
    store.put_artifact(run_id, "receiver_head_kurtosis", receiver.kurtosis)
    store.put_artifact(run_id, "receiver_heads", [h.as_dict() for h in receiver.top])
    store.put_artifact(run_id, "receiver_split_half_r", receiver.split_half_r)
    store.put_artifact(run_id, "receiver_meta", {**params, "n_traces": len(results)})


def _write_suppression(store, run_id, pid, matrix, trace, tt: TraceTokens, meta) -> None:
    store.put_artifact(run_id, "suppression_matrix", _padded(matrix, len(trace.sentences)), pid)
    store.put_artifact(
        run_id,
        "suppression_meta",
        {
            **meta,
            "n_tokens": int(tt.tokens.shape[0]),
            "n_sentences": len(tt.ranges),
            "n_dropped": tt.n_dropped,
            "rows": "suppressed sentence j",
            "cols": "affected sentence k",
        },
        pid,
    )


# ---- inputs: trace files and stored traces --------------------------------------------------------


def load_trace_file(path) -> tuple[str, ReasoningTrace, dict]:
    """(problem_id, trace, problem) from a published `base_solution.json` (keys prompt, solution; a sibling
    problem.json gives the problem text and gt_answer) or a plain-text file (the whole text is the completion).

    problem_id: "<parent dir>/<problem dir>" for published files (e.g. "correct_base_solution/problem_330"),
    the file stem for text files.
    """
    from pathlib import Path

    from thoughtlens.trace.published_files import read_base_solution, read_problem

    path = Path(path)
    if not path.is_file():
        raise TraceError(f"no trace file at {path}: pass a base_solution.json or a plain-text trace")
    if path.suffix != ".json":
        return path.stem, ReasoningTrace.parse("", path.read_text(encoding="utf-8", errors="replace")), {}
    # Shapes and types checked (DataError, a TraceError, naming file, key and fix).
    data = read_base_solution(path, require=("prompt", "solution"))
    prompt, solution = data["prompt"], data["solution"]
    problem: dict = {}
    if (path.parent / "problem.json").is_file():
        info = read_problem(path.parent / "problem.json")
        problem = {"problem": info.get("problem"), "gt_answer": info.get("gt_answer")}
    return f"{path.parent.parent.name}/{path.parent.name}", ReasoningTrace.parse(prompt, solution), problem


def traces_from_store(store, run_id: str) -> dict[str, ReasoningTrace]:
    """{problem_id: trace} of every stored base trace of a run, with the stored sentences (so artifact
    indices line up with the store's sentence indices)."""
    from thoughtlens.trace.reasoning_trace import Sentence

    out = {}
    for pid in store.problems(run_id)["problem_id"]:
        stored = store.trace(run_id, pid)
        if stored is None or not stored["sentences"]:
            continue
        trace = ReasoningTrace.parse(stored["prompt"], stored["completion"])
        trace.sentences = [Sentence(s["index"], s["start"], s["end"], s["text"]) for s in stored["sentences"]]
        out[pid] = trace
    if not out:
        raise TraceError(
            f"run '{run_id}' has no base traces with sentences: run `thoughtlens anchors run` first, "
            "or pass traces with --trace"
        )
    return out
