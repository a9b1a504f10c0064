"""Receiver heads: attention heads that funnel attention onto a few "broadcasting" sentences.

Pipeline (Thought Anchors, Bogdan et al. 2025, section 4):
  1. vertical score of sentence k (per head) = mean of A[q, k] over queries q >= k + proximity_ignore,
     from the sentence x sentence attention A (see `sentence_attention`);
  2. a head's receiver-headness = kurtosis of its vertical scores over sentences
     (Fisher, bias=True, NaN-omitting, as scipy.stats.kurtosis);
  3. average the kurtosis over traces, rank heads (layer 0 excluded by default), take the top-k;
  4. a sentence's receiver score = its mean vertical score over the top-k heads.
Split-half reliability: Pearson r, over heads, between the kurtosis averaged over even-indexed
and over odd-indexed traces.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from thoughtlens.errors import TraceError


def vertical_scores(attention: np.ndarray, proximity_ignore: int = 4, control_depth: bool = False) -> np.ndarray:
    """Vertical attention scores: [..., S, S] -> [..., S].

    attention: sentence x sentence attention, rows = query sentence q, columns = key sentence k
        (leading axes, e.g. [layers, heads], are kept).
    proximity_ignore: only queries at least this many sentences later count (q - k >= proximity_ignore),
        so a sentence is not scored by the local attention of its neighbours. Default 4.
    control_depth: if True, first replace each query row's counted entries by their rank within
        the row divided by the number of counted entries (later rows spread attention over more
        sentences; ranking puts every row on the same 0..1 scale), as in the paper's code.
    Returns NaN for the last `proximity_ignore` sentences (no query far enough) and for sentences
    whose counted entries are all NaN (zero-token sentences).
    Raises TraceError when S <= proximity_ignore: no sentence could be scored.
    """
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim < 2 or attention.shape[-1] != attention.shape[-2]:
        raise TraceError(
            f"attention must be [..., S, S], got shape {attention.shape}: pass a sentence x sentence matrix"
        )
    if proximity_ignore < 1:
        raise TraceError(f"proximity_ignore must be >= 1 (queries strictly after the key), got {proximity_ignore}")
    n = attention.shape[-1]
    if n <= proximity_ignore:
        raise TraceError(
            f"the trace has {n} sentences, not more than proximity_ignore={proximity_ignore}: no sentence "
            f"has a query far enough; use a longer trace or a smaller proximity_ignore"
        )
    q, k = np.indices((n, n))
    counted = (q - k) >= proximity_ignore  # [S, S]: the lower band that scores sentence k
    masked = np.where(counted, attention, np.nan)
    if control_depth:
        masked = _rank_rows(masked)
    with warnings.catch_warnings():  # all-NaN columns are expected (last sentences): they stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(masked, axis=-2)


def _rank_rows(masked: np.ndarray) -> np.ndarray:
    """Per query row, rank / count of the non-NaN entries (NaN stays NaN)."""
    ranks = stats.rankdata(masked, axis=-1, nan_policy="omit")
    count = np.sum(~np.isnan(masked), axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ranks / count


def head_kurtosis(vertical: np.ndarray) -> np.ndarray:
    """Kurtosis over sentences of each head's vertical scores: [..., S] -> [...].

    Fisher (normal = 0), bias=True, NaN-omitting; NaN where fewer than 2 scores are finite or all equal.
    """
    vertical = np.asarray(vertical, dtype=np.float64)
    flat = vertical.reshape(-1, vertical.shape[-1])
    out = np.full(flat.shape[0], np.nan)
    for i, row in enumerate(flat):  # per head: nan_policy="omit" returns masked arrays, awkward to vectorise
        finite = row[np.isfinite(row)]
        if len(finite) >= 2 and np.ptp(finite) > 0:  # constant scores: kurtosis is 0/0, leave NaN
            out[i] = float(stats.kurtosis(row, fisher=True, bias=True, nan_policy="omit"))
    return out.reshape(vertical.shape[:-1])


@dataclass(frozen=True)
class ReceiverHead:
    layer: int
    head: int
    kurtosis: float

    def as_dict(self) -> dict:
        return {"layer": self.layer, "head": self.head, "kurtosis": self.kurtosis}


def rank_heads(kurtosis: np.ndarray, top_k: int = 20, exclude_layers: Sequence[int] = (0,)) -> list[ReceiverHead]:
    """The top_k heads by kurtosis [layers, heads], highest first; NaN heads and `exclude_layers` never rank.

    Layer 0 is excluded by default: its heads attend by position and token identity before any
    sentence-level information exists, and the paper leaves it out.
    """
    kurtosis = np.asarray(kurtosis, dtype=np.float64)
    if kurtosis.ndim != 2:
        raise TraceError(f"kurtosis must be [layers, heads], got shape {kurtosis.shape}")
    if top_k < 1:
        raise TraceError(f"top_k must be >= 1, got {top_k}")
    ranked = [
        ReceiverHead(L, h, float(kurtosis[L, h]))
        for L in range(kurtosis.shape[0])
        if L not in set(exclude_layers)
        for h in range(kurtosis.shape[1])
        if np.isfinite(kurtosis[L, h])
    ]
    ranked.sort(key=lambda r: (-r.kurtosis, r.layer, r.head))
    return ranked[:top_k]


def receiver_scores(vertical: np.ndarray, heads: Sequence[ReceiverHead | tuple[int, int]]) -> np.ndarray:
    """Per-sentence receiver score: mean vertical score over `heads`. vertical: [layers, heads, S] -> [S]."""
    if not heads:
        raise TraceError("no receiver heads to score with: the kurtosis of every head was NaN (traces too short?)")
    pairs = [(h.layer, h.head) if isinstance(h, ReceiverHead) else (int(h[0]), int(h[1])) for h in heads]
    rows = np.stack([np.asarray(vertical)[L, h] for L, h in pairs])  # [k, S]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(rows, axis=0)


def split_half_r(per_trace_kurtosis: np.ndarray, exclude_layers: Sequence[int] = (0,)) -> float | None:
    """Pearson r over heads between mean kurtosis of even- and odd-indexed traces.

    per_trace_kurtosis: [traces, layers, heads]. None with fewer than 2 traces or fewer than 3 heads
    finite in both halves (r undefined or meaningless).
    """
    k = np.asarray(per_trace_kurtosis, dtype=np.float64)
    if k.ndim != 3 or k.shape[0] < 2:
        return None
    keep = np.ones(k.shape[1], dtype=bool)
    keep[[L for L in exclude_layers if 0 <= L < k.shape[1]]] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        even, odd = np.nanmean(k[0::2, keep], axis=0).ravel(), np.nanmean(k[1::2, keep], axis=0).ravel()
    ok = np.isfinite(even) & np.isfinite(odd)
    if ok.sum() < 3:
        return None
    return float(stats.pearsonr(even[ok], odd[ok]).statistic)


@dataclass
class ReceiverHeadResult:
    """kurtosis: [layers, heads] mean over traces; per_trace_kurtosis: [traces, layers, heads];
    top: ranked heads; split_half_r: reliability (None with < 2 traces)."""

    kurtosis: np.ndarray
    per_trace_kurtosis: np.ndarray
    top: list[ReceiverHead]
    split_half_r: float | None


def find_receiver_heads(
    vertical_per_trace: Sequence[np.ndarray], *, top_k: int = 20, exclude_layers: Sequence[int] = (0,)
) -> ReceiverHeadResult:
    """Rank heads over traces. vertical_per_trace: one [layers, heads, S_t] array per trace."""
    if not vertical_per_trace:
        raise TraceError("no traces given: pass at least one trace")
    per_trace = np.stack([head_kurtosis(v) for v in vertical_per_trace])  # [traces, layers, heads]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(per_trace, axis=0)
    return ReceiverHeadResult(
        mean, per_trace, rank_heads(mean, top_k, exclude_layers), split_half_r(per_trace, exclude_layers)
    )
