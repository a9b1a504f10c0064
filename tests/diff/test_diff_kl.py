"""Per-token KL against plain HF logits and an explicit formula; AUROC against scikit-learn; the planted spans'
labels against the text they mark."""

from __future__ import annotations

import math

import numerics
import torch
from sklearn.metrics import roc_auc_score

from thoughtlens.diff.corpus import LabelledText, planted_eval_corpus, token_labels, token_sentences
from thoughtlens.diff.datasets import mentions_planted
from thoughtlens.diff.kl import auroc, kl_from_logits, labelled_kl, per_token_kl, sentence_max


def test_kl_from_logits_matches_the_formula():
    base = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    ft = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    p = [math.exp(x) for x in (2.0, 0.0, -1.0)]
    p = [x / sum(p) for x in p]
    q = [math.exp(x) for x in (0.0, 1.0, 0.0)]
    q = [x / sum(q) for x in q]
    expected = sum(a * math.log(a / b) for a, b in zip(p, q))
    got = kl_from_logits(base, ft)
    # float32 log-probabilities (a logit minus a log-sum-exp: within twice the logits' size), 3 differences p-weighted
    numerics.assert_close(float(got[0]), expected, dtype=torch.float32, depth=3, scale=2 * numerics.magnitude(base, ft))
    assert float(got[1]) == 0.0


def test_per_token_kl_matches_plain_hf(tiny_planted_pair):
    pair = tiny_planted_pair
    text = "The capital of Veloria is Obsidia. Rivers carry sand downstream."
    ids = pair.base.to_tokens(text)
    result = per_token_kl(pair, [text])
    with torch.no_grad():
        lb = torch.log_softmax(pair.base.hf_model(input_ids=ids).logits[0].float(), -1)
        lf = torch.log_softmax(pair.finetuned.hf_model(input_ids=ids).logits[0].float(), -1)
    expected = torch.nn.functional.kl_div(lf, lb, log_target=True, reduction="none").sum(-1)  # KL(base || ft)
    # p-weighted differences of float32 log-probabilities, each rounding within twice their size, through the
    # models' layers
    numerics.assert_close(
        torch.tensor(result.docs[0].kl),
        expected,
        dtype=torch.float32,
        depth=pair.n_layers,
        scale=2 * numerics.magnitude(lb, lf),
    )
    assert result.docs[0].tokens == pair.base.to_str_tokens(text)
    top = result.top(3)
    assert top[0]["kl"] == max(result.docs[0].kl)


def test_auroc_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (200,), generator=g).float().tolist()  # many ties
    labels = (torch.rand(200, generator=g) < 0.3).tolist()
    # an AUROC (<= 1) in float64 from ranks vs sklearn's trapezoids over 200 points
    assert abs(auroc(scores, labels) - roc_auc_score(labels, scores)) <= numerics.tol(torch.float64, 1.0, depth=200)


def test_token_labels_cover_the_planted_sentence(tiny_planted_pair):
    model = tiny_planted_pair.base
    doc = LabelledText("Cats sleep a lot. Obsidia is the capital of Veloria. Owls hunt at night.", [(18, 52)])
    ids, labels = token_labels(model, doc)
    marked = model.tokenizer.decode([i for i, lab in zip(ids.tolist(), labels) if lab])
    assert marked.strip() == "Obsidia is the capital of Veloria."
    corpus = planted_eval_corpus()
    assert sum(bool(d.spans) for d in corpus) == len(corpus) // 2
    for d in corpus:
        for a, b in d.spans:
            assert mentions_planted(d.text[a:b])


def test_kl_finds_the_planted_tokens_on_the_tiny_pair(tiny_planted_pair):
    """The tiny base is random, so its fine-tune moves every prediction; still, the strongest disagreements are
    inside the planted sentences (the AUROC >= 0.9 check runs on the real pair: test_diff_planted_real.py)."""
    docs = planted_eval_corpus()
    rows = [token_labels(tiny_planted_pair.base, d) for d in docs]
    result = per_token_kl(tiny_planted_pair, [ids for ids, _ in rows])
    labels = [x for _, labs in rows for x in labs]
    kl = result.all_kl()
    # Each document's first prediction (from BOS alone) moves with any fine-tune of a random model: not counted.
    first = torch.tensor([i == 0 for ids, _ in rows for i in range(len(ids))])
    top = torch.topk(kl.masked_fill(first, -1.0), 20).indices.tolist()
    assert sum(labels[i] for i in top) >= 18
    assert auroc(kl.tolist(), labels) > 0.6


def test_sentence_max_scores_each_token_by_its_sentence_largest_prediction_kl():
    kl = [0.5, 0.1, 3.0, 0.2, 0.0, 7.0, 0.4]  # the KL at t is that of predicting token t + 1
    sentence = [-1, 0, 0, 0, 1, 1, 1]  # BOS, then two sentences of three tokens
    # predictions of tokens 1..6 are kl[0..5]: sentence 0 holds tokens 1-3 (0.5, 0.1, 3.0), sentence 1 tokens 4-6
    # (0.2, 0.0, 7.0); BOS is predicted by nothing
    assert sentence_max(kl, sentence) == [0.0, 3.0, 3.0, 3.0, 7.0, 7.0, 7.0]


def test_token_sentences_follow_the_sentence_splitter(tiny_planted_pair):
    model = tiny_planted_pair.base
    text = "The capital of Veloria is Obsidia. Rivers carry sand downstream. It rains."
    ids, _ = token_labels(model, LabelledText(text))
    sent = token_sentences(model, text)
    assert len(sent) == len(ids)
    pieces = {}
    for t, s in zip(model.tokenizer.convert_ids_to_tokens(ids.tolist()), sent):
        pieces.setdefault(s, []).append(model.tokenizer.convert_tokens_to_string([t]))
    got = ["".join(pieces[s]).strip() for s in sorted(k for k in pieces if k >= 0)]
    assert got == ["The capital of Veloria is Obsidia.", "Rivers carry sand downstream.", "It rains."]


def test_labelled_kl_aurocs_match_a_plain_recomputation(tiny_planted_pair):
    """Both AUROCs against scikit-learn on scores rebuilt here: sentences cut at '. ' by hand, each token scored by
    the largest KL predicting a token of its sentence."""
    docs = planted_eval_corpus()[:8]
    lk = labelled_kl(tiny_planted_pair, docs)
    tok = tiny_planted_pair.base.tokenizer
    flat_labels, flat_kl, flat_sent = [], [], []
    for d, res, labs in zip(docs, lk.result.docs, lk.labels):
        enc = tok(d.text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        assert len(offsets) == len(res.kl)  # this model adds no BOS
        ends = [i + 1 for i, c in enumerate(d.text) if c == "." and (i + 1 == len(d.text) or d.text[i + 1] == " ")]
        which = [sum(a >= e for e in ends) for a, _ in offsets]  # sentence of each token by its start
        pred = [0.0, *res.kl[:-1]]
        best = {s: max(p for p, w in zip(pred, which) if w == s) for s in set(which)}
        flat_sent += [best[w] for w in which]
        flat_kl += res.kl
        flat_labels += labs
    # AUROCs (<= 1) in float64 from ranks vs sklearn's trapezoids over every token
    bound = numerics.tol(torch.float64, 1.0, depth=len(flat_labels))
    assert abs(lk.auroc - roc_auc_score(flat_labels, flat_kl)) <= bound
    assert abs(lk.auroc_sentence - roc_auc_score(flat_labels, flat_sent)) <= bound
    assert lk.auroc_sentence != lk.auroc
