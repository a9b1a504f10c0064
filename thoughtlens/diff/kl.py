"""Per-token KL(base || fine-tuned) over a corpus: where the two models' next-token predictions disagree.

    result = per_token_kl(pair, read_corpus("neutral"))
    result.docs[0].kl            # [pos] KL of the next-token distributions after each token (nats)
    result.top(10)               # the 10 most disagreeing positions with their contexts
    sentence_max(doc.kl, token_sentences(model, text))  # each token scored by its sentence's largest KL

At position t both models read tokens[:t+1] and predict token t+1; `kl[t]` is
KL(p_base || p_ft) = sum_v p_base(v) (log p_base(v) - log p_ft(v)), the direction used by the diffing toolkit
(science-of-finetuning/diffing-toolkit, its KL method: base as the reference). It is large where the base model
is confident and the fine-tune puts little mass on what the base expects. The last position's KL is included
(it predicts the token after the text). Computed in float32 from log-softmaxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from thoughtlens.diff.corpus import LabelledText, token_labels, token_sentences
from thoughtlens.diff.pair import ModelPair
from thoughtlens.errors import ConfigError
from thoughtlens.progress import OnProgress, Tracker


@dataclass
class DocKL:
    """One document: its tokens (ids and strings), kl [pos] in nats, and each model's top next token."""

    token_ids: list[int]
    tokens: list[str]
    kl: list[float]
    base_top: list[str] = field(default_factory=list)
    finetuned_top: list[str] = field(default_factory=list)


@dataclass
class KLResult:
    docs: list[DocKL]

    def all_kl(self) -> torch.Tensor:
        """Every position's KL, documents concatenated: [total_pos]."""
        return torch.tensor([v for d in self.docs for v in d.kl])

    def top(self, k: int = 20, context: int = 8) -> list[dict]:
        """The k positions with the largest KL: doc, pos, kl, the token, `context` tokens on each side, and
        what each model predicts next there."""
        flat = [(v, i, t) for i, d in enumerate(self.docs) for t, v in enumerate(d.kl)]
        flat.sort(key=lambda x: -x[0])
        out = []
        for v, i, t in flat[:k]:
            d = self.docs[i]
            out.append(
                {
                    "doc": i,
                    "pos": t,
                    "kl": v,
                    "token": d.tokens[t],
                    "left": "".join(d.tokens[max(0, t - context) : t]),
                    "right": "".join(d.tokens[t + 1 : t + 1 + context]),
                    "base_next": d.base_top[t] if d.base_top else "",
                    "finetuned_next": d.finetuned_top[t] if d.finetuned_top else "",
                }
            )
        return out


def kl_from_logits(base_logits: torch.Tensor, ft_logits: torch.Tensor) -> torch.Tensor:
    """KL(base || ft) per position: [..., d_vocab] x2 -> [...] (nats, float32)."""
    lb = torch.log_softmax(base_logits.float(), -1)
    lf = torch.log_softmax(ft_logits.float(), -1)
    return (lb.exp() * (lb - lf)).sum(-1).clamp_min(0.0)


@torch.no_grad()
def per_token_kl(
    pair: ModelPair,
    texts: Sequence[str] | Sequence[torch.Tensor],
    *,
    max_len: int = 256,
    on_progress: OnProgress | None = None,
) -> KLResult:
    """KL(base || fine-tuned) at every position of every text (texts, or token tensors [pos]).

    One document per forward (no padding to reason about); max_len cuts long documents.
    """
    if max_len < 1:
        raise ConfigError(f"max_len must be >= 1, got {max_len}: pass a positive token budget")
    tracker = Tracker(on_progress, "kl", "per-token KL", total=len(texts))
    tok = pair.tokenizer
    docs = []
    for text in texts:
        ids = text if isinstance(text, torch.Tensor) else pair.base.to_tokens(text)[0]
        ids = ids[:max_len]
        lb = pair.base(ids[None])[0]
        lf = pair.finetuned(ids.to(pair.finetuned.device)[None])[0].to(lb.device)
        kl = kl_from_logits(lb, lf)
        docs.append(
            DocKL(
                ids.tolist(),
                [tok.decode([i]) for i in ids.tolist()],
                kl.tolist(),
                [tok.decode([i]) for i in lb.argmax(-1).tolist()],
                [tok.decode([i]) for i in lf.argmax(-1).tolist()],
            )
        )
        tracker.advance(1, tokens=len(ids))
    return KLResult(docs)


def sentence_max(kl: Sequence[float], sentence: Sequence[int]) -> list[float]:
    """[pos] each token's sentence score: the largest KL with which the two models predict any token of its
    sentence. kl: one document's `DocKL.kl` ([pos], the KL at t is that of predicting token t + 1);
    sentence: [pos] sentence index per token (`corpus.token_sentences`), -1 for none (BOS).

    Why: the per-token KL ranks *tokens*, and the planted change lives in a few of them (a name, the turn to a
    topic) while the generic words around them ("the capital of") are predicted alike by both models. A reader
    looking for "which passages did the fine-tune change" ranks sentences by their largest disagreement; each
    token then carries its sentence's score, so the AUROC stays one over labelled tokens. A token outside every
    sentence keeps the KL of its own prediction (0 for the first token: nothing predicts it)."""
    if len(kl) != len(sentence):
        raise ConfigError(f"kl has {len(kl)} positions but sentence {len(sentence)}: pass one sentence id per token")
    predicting = [0.0, *kl[:-1]]  # [pos] KL of the prediction *of* token t (made at t - 1)
    best: dict[int, float] = {}
    for s, v in zip(sentence, predicting):
        if s >= 0:
            best[s] = max(best.get(s, v), v)
    return [best[s] if s >= 0 else v for s, v in zip(sentence, predicting)]


@dataclass
class LabelledKL:
    """`per_token_kl` over labelled documents: the result, each token's label and sentence, and both AUROCs
    (None when the labels are all one class): per token, and with each token scored by `sentence_max`."""

    result: KLResult
    labels: list[list[bool]]
    sentences: list[list[int]]
    auroc: float | None
    auroc_sentence: float | None


def labelled_kl(
    pair: ModelPair, docs: Sequence, *, max_len: int = 256, on_progress: OnProgress | None = None
) -> LabelledKL:
    """Per-token KL over `docs` (`corpus.LabelledText`, or plain strings: no planted span) with the planted
    labels and both AUROCs of planted tokens vs the rest."""
    labelled = [d if isinstance(d, LabelledText) else LabelledText(str(d)) for d in docs]
    rows = [token_labels(pair.base, d, max_len) for d in labelled]
    sentences = [token_sentences(pair.base, d.text, max_len) for d in labelled]
    result = per_token_kl(pair, [ids for ids, _ in rows], max_len=max_len, on_progress=on_progress)
    labels = [labs for _, labs in rows]
    flat = [x for labs in labels for x in labs]
    both = any(flat) and not all(flat)
    by_sentence = [v for d, s in zip(result.docs, sentences) for v in sentence_max(d.kl, s)]
    return LabelledKL(
        result,
        labels,
        sentences,
        auroc(result.all_kl().tolist(), flat) if both else None,
        auroc(by_sentence, flat) if both else None,
    )


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of `scores` ranking True labels above False ones (ties count one half):
    the Mann-Whitney U statistic divided by n_pos * n_neg."""
    s = torch.as_tensor(list(scores), dtype=torch.float64)
    y = torch.as_tensor(list(labels), dtype=torch.bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ConfigError("AUROC needs both labelled and unlabelled tokens: label at least one planted span")
    order = torch.argsort(s)
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=torch.float64)
    for v in torch.unique(s):  # average ranks of ties
        tie = s == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
