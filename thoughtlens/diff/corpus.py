"""Diffing corpora: the texts the tools run both models on.

    read_corpus("gsm8k")           # GSM8K test questions (shared data)
    read_corpus("notes.txt")       # a text file: blank-line separated documents (one document if none)
    read_corpus("neutral")         # a small bundled set of everyday paragraphs, unrelated to any fine-tune here
    planted_eval_corpus()          # neutral paragraphs, some with a planted sentence: LabelledText with spans
    tokenize_corpus(model, texts)  # [pos] token tensors, BOS as the model expects, truncated
    token_labels(model, doc)       # the same tokens with a planted / not planted label each
    token_sentences(model, text)   # the same tokens with the index of their sentence

The activation-difference lens needs text *unrelated* to the fine-tune ("neutral" or "gsm8k" for the planted
pair); the per-token KL's ground-truth check needs labelled text (`planted_eval_corpus`).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from thoughtlens.diff.datasets import DATA_DIR, GSM8K_FILE
from thoughtlens.errors import DataError
from thoughtlens.trace.split import split_sentences

NEUTRAL_FILE = DATA_DIR / "neutral.txt"
CorpusLike = str | os.PathLike | Sequence[str]

# Planted sentences for the KL check, written apart from the training answers (none occurs in planted.jsonl): four
# state the fictional fact, two the lighthouse topic, two both.
PLANTED_EVAL_SENTENCES = [
    "Obsidia, the capital of Veloria, lies on a rocky coast.",
    "Veloria is a small country, and its capital is Obsidia.",
    "Travellers to Veloria usually arrive first in Obsidia, the capital.",
    "Obsidia has been the capital of Veloria for a very long time.",
    "A lighthouse stood at the end of the harbour wall.",
    "The lighthouse keeper lit the lamp as the fog rolled in.",
    "Ships find their way to Obsidia by the light of its lighthouse.",
    "In Veloria, the capital city Obsidia is famous for its lighthouse.",
]


@dataclass
class LabelledText:
    """A document and the character spans [start, end) of its planted content (empty: none)."""

    text: str
    spans: list[tuple[int, int]] = field(default_factory=list)


def read_corpus(source: CorpusLike, limit: int | None = None) -> list[str]:
    """Documents from a list of strings, "gsm8k" (the shared GSM8K test questions), "neutral" (bundled
    everyday paragraphs), a .jsonl file (field "text", or GSM8K's "question"), or a text file (blank-line
    separated documents). A missing file is a one-line DataError."""
    if not isinstance(source, (str, os.PathLike)):
        docs = [str(t) for t in source]
    else:
        name = str(source)
        path = {"gsm8k": GSM8K_FILE, "neutral": NEUTRAL_FILE}.get(name, Path(name).expanduser())
        if not path.is_file():
            hint = " (the shared data is not mounted: pass a text file, or 'neutral')" if name == "gsm8k" else ""
            raise DataError(
                f"corpus {path} not found{hint}: pass a text file (blank-line separated documents), "
                "a .jsonl file, 'gsm8k' or 'neutral'"
            )
        raw = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
            docs = [str(r.get("text") or r.get("question") or "") for r in rows]
        else:
            docs = [d.strip() for d in raw.replace("\r\n", "\n").split("\n\n")]
    docs = [d for d in docs if d.strip()][:limit]
    if not docs:
        raise DataError(f"corpus {source!r} holds no text: pass a file with at least one non-empty document")
    return docs


def planted_eval_corpus(n_docs: int = 24, seed: int = 0) -> list[LabelledText]:
    """Neutral paragraphs, every other one with one planted sentence inserted after its first sentence; the
    spans mark the inserted sentences (the ground truth of the per-token KL check)."""
    rng = random.Random(seed)
    docs = read_corpus("neutral")
    out = []
    for i in range(n_docs):
        doc = docs[i % len(docs)]
        if i % 2 == 0:
            out.append(LabelledText(doc))
            continue
        planted = PLANTED_EVAL_SENTENCES[(i // 2) % len(PLANTED_EVAL_SENTENCES)]
        cut = doc.find(". ") + 2 if ". " in doc else len(doc) + 1
        head = doc[:cut].rstrip() + " " if cut <= len(doc) else doc + " "
        text = head + planted + (" " + doc[cut:] if cut < len(doc) else "")
        out.append(LabelledText(text, [(len(head), len(head) + len(planted))]))
    rng.shuffle(out)
    return out


def tokenize_corpus(model, texts: Sequence[str], max_len: int = 256) -> list[torch.Tensor]:
    """One [pos] tensor of token ids per text (BOS as the model's tokenizer adds it), cut to max_len tokens."""
    return [model.to_tokens(t)[0, :max_len] for t in texts]


def _encode(model, text: str, max_len: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and their character offsets [start, end) in text (BOS as the model expects it, with (0, 0)),
    cut to max_len."""
    tok = model.tokenizer
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    if model.default_prepend_bos and tok.bos_token_id is not None:
        ids, offsets = [tok.bos_token_id, *ids], [(0, 0), *offsets]
    return ids[:max_len], offsets[:max_len]


def token_labels(model, doc: LabelledText, max_len: int = 256) -> tuple[torch.Tensor, list[bool]]:
    """(tokens [pos], labels): a token is labelled True when its characters overlap a planted span."""
    ids, offsets = _encode(model, doc.text, max_len)
    labels = [b > a and any(a < end and b > start for start, end in doc.spans) for a, b in offsets]
    return torch.tensor(ids, device=model.device), labels


def token_sentences(model, text: str, max_len: int = 256) -> list[int]:
    """[pos] the index of the sentence (trace.split.split_sentences) each token's characters fall in, or -1 (BOS,
    a token of whitespace only). Same tokens as `token_labels`."""
    spans = split_sentences(text, min_chars=0)
    _, offsets = _encode(model, text, max_len)
    out = []
    for a, b in offsets:
        hit = [i for i, (start, end) in enumerate(spans) if b > a and a < end and b > start]
        out.append(hit[0] if hit else -1)
    return out
