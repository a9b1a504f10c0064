"""SAE features of a whole stored run, for the report page's feature panel.

    summary = store_run_features(model, sae, store, run_id, on_progress=print)
    # then `thoughtlens report STORE`: click a sentence -> its top features; click a feature -> where else it fires

For every problem of the run that has a base trace, each sentence's activation of every latent is
computed (`features.sentence_features`, max over the sentence's tokens by default) and three artifacts
are written (declared in store/artifacts.py):

- `sae_sentence_features` (per problem): {"sae": meta, "sentences": [[[feature, activation], ...] per
  sentence]}: each sentence's `top_per_sentence` most active latents (activation > 0), strongest first.
- `sae_feature_candidates` (per problem): for every latent active anywhere in the problem, its
  `top_sentences` most active sentences there ({"sae": fingerprint, "feature": [...], "sentence": [...],
  "activation": [...]}). The run's top sentences of a latent are the best of these over all problems, so a
  killed job resumes problem by problem and the run table is rebuilt without a model pass.
- `sae_feature_table` (per run): for every latent in some sentence's top list, an optional label, the tokens
  its decoder row promotes / suppresses through the unembedding (`features.logit_weights`), and its
  top-activating sentences across the problems of the run (problem id, sentence index, activation, text).

A problem already done with the same SAE (same weights, hook and pooling; see `sae_meta`) is not
recomputed. Every value is plain JSON: the page escapes every string (tokens and sentences are model text).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from thoughtlens.errors import SAEError
from thoughtlens.progress import OnProgress, Tracker, note
from thoughtlens.sae.base import SAE
from thoughtlens.sae.features import logit_weights, sentence_features
from thoughtlens.store.run_store import RunStore, pick_run_id
from thoughtlens.trace.reasoning_trace import ReasoningTrace, Sentence

SENTENCES, CANDIDATES = "sae_sentence_features", "sae_feature_candidates"  # read back; written as literals (checked)


def sae_meta(sae: SAE, *, pool: str, top_per_sentence: int, top_sentences: int) -> dict:
    """What identifies a computation: the SAE (a hash of its config and weights), its hook and the settings."""
    h = hashlib.sha1(json.dumps(dataclasses.asdict(sae.cfg), sort_keys=True, default=str).encode())
    for name, tensor in sorted(sae.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return {
        "fingerprint": h.hexdigest()[:16],
        "hook": sae.cfg.hook_name,
        "architecture": sae.cfg.architecture,
        "d_sae": int(sae.cfg.d_sae),
        "pool": pool,
        "top_per_sentence": int(top_per_sentence),
        "top_sentences": int(top_sentences),
    }


def stored_trace(trace: dict) -> ReasoningTrace:
    """A ReasoningTrace over a RunStore trace dict (sentence offsets into prompt + completion, as stored)."""
    text = trace["prompt"] + trace["completion"]
    sentences = []
    for pos, s in enumerate(trace["sentences"]):
        if s["index"] != pos or text[s["start"] : s["end"]] != s["text"]:
            raise SAEError(
                f"stored sentence {s['index']} does not match its offsets in the trace text; "
                "re-run `thoughtlens anchors run` to rewrite the trace"
            )
        sentences.append(Sentence(pos, s["start"], s["end"], s["text"]))
    span = (sentences[0].start, sentences[-1].end) if sentences else (len(trace["prompt"]), len(text))
    return ReasoningTrace(trace["prompt"], trace["completion"], span, None, sentences, trace.get("answer"))


def top_per_row(feats: torch.Tensor, top: int) -> list[list[list]]:
    """feats: [n_sentences, d_sae] -> per sentence [[feature, activation], ...]: its `top` most active
    latents with activation > 0, strongest first (ties: lower feature id first)."""
    X = feats.detach().float().cpu().numpy()
    out = []
    for row in X:
        order = np.argsort(-row, kind="stable")[:top]
        out.append([[int(f), round(float(row[f]), 5)] for f in order if row[f] > 0])
    return out


def top_per_column(feats: torch.Tensor, n: int) -> dict[str, list]:
    """feats: [n_sentences, d_sae] -> for every latent active somewhere, its `n` most active sentences
    (activation > 0), as three parallel lists (feature, sentence, activation)."""
    X = feats.detach().float().cpu().numpy()
    order = np.argsort(-X, axis=0, kind="stable")[:n]  # [n, d_sae] sentence indices
    vals = np.take_along_axis(X, order, axis=0)
    rank, feature = np.nonzero(vals > 0)
    keep = np.lexsort((rank, feature))  # by feature, then rank
    feature, rank = feature[keep], rank[keep]
    return {
        "feature": feature.tolist(),
        "sentence": order[rank, feature].tolist(),
        "activation": [round(float(v), 5) for v in vals[rank, feature]],
    }


def store_run_features(
    model,
    sae: SAE,
    store: RunStore,
    run_id: str | None = None,
    *,
    problem_ids: Sequence[str] | None = None,
    top_per_sentence: int = 5,
    top_sentences: int = 10,
    n_tokens: int = 8,
    pool: str = "max",
    labels: Mapping[int, str] | None = None,
    on_progress: OnProgress | None = None,
) -> dict:
    """Compute and store the SAE feature panel's data for a run (see the module doc).

    problem_ids: the problems to compute (default: every problem with a base trace); the run table
    covers every problem of the run that holds features of this SAE. labels: {latent: text} shown on the
    page (e.g. Neuronpedia explanations). Returns {"problems": computed, "skipped": already done,
    "features": latents in the run table}.
    """
    for name, value in (
        ("top_per_sentence", top_per_sentence),
        ("top_sentences", top_sentences),
        ("n_tokens", n_tokens),
    ):
        if not isinstance(value, int) or value < 1:
            raise SAEError(f"{name} must be a positive integer, got {value!r}")
    if pool not in ("max", "mean"):
        raise SAEError(f"pool must be 'max' or 'mean', got {pool!r}")
    run_id, _ = pick_run_id(store, run_id)  # default: the latest anchors run
    all_ids = store.problems(run_id)["problem_id"].tolist()
    for pid in problem_ids or ():
        if pid not in all_ids:
            raise SAEError(
                f"no problem '{pid}' in run '{run_id}' (problems: {', '.join(all_ids[:10]) or 'none'}); "
                "pass one of those"
            )
    traces = {pid: t for pid in (problem_ids or all_ids) if (t := store.trace(run_id, pid)) and t["sentences"]}
    if not traces:
        raise SAEError(f"run '{run_id}' has no base trace with sentences: run `thoughtlens anchors run` first")
    meta = sae_meta(sae, pool=pool, top_per_sentence=top_per_sentence, top_sentences=top_sentences)
    run_model = (store.run(run_id).get("config") or {}).get("model")
    if run_model and getattr(model, "name", None) and str(run_model) != str(model.name):
        note(on_progress, f"run '{run_id}' was sampled with {run_model}; its traces are read here with {model.name}")
    bar = Tracker(on_progress, "sae features", f"{len(traces)} traces", total=len(traces))
    computed = skipped = 0
    for pid, trace in traces.items():
        done = store.get_artifact(run_id, SENTENCES, pid, default=None)
        cands = store.get_artifact(run_id, CANDIDATES, pid, default=None)
        if done and done.get("sae") == meta and cands and cands.get("sae") == meta["fingerprint"]:
            skipped += 1
            bar.advance(1)
            continue
        feats = sentence_features(model, sae, stored_trace(trace), pool=pool)  # [S, d_sae]
        # Candidates first: a sentence artifact with this SAE's meta then implies its candidates are there.
        candidates = {"sae": meta["fingerprint"], **top_per_column(feats, top_sentences)}
        store.put_artifact(run_id, "sae_feature_candidates", candidates, pid)
        rows = {"sae": meta, "sentences": top_per_row(feats, top_per_sentence)}
        store.put_artifact(run_id, "sae_sentence_features", rows, pid)
        computed += 1
        bar.advance(1)
    if skipped:
        note(on_progress, f"{skipped} trace(s) already had features of this SAE: not recomputed")
    table = _run_table(model, sae, store, run_id, all_ids, meta, n_tokens, labels or {})
    store.put_artifact(run_id, "sae_feature_table", table)
    return {"problems": computed, "skipped": skipped, "features": len(table["features"])}


def _run_table(model, sae, store, run_id, problem_ids, meta, n_tokens, labels) -> dict:
    """Merge every problem's stored features of this SAE into the run's feature table."""
    n = meta["top_sentences"]
    shown: set[int] = set()
    rows: dict[int, list[tuple[float, int, int, str]]] = {}  # feature -> [(activation, problem pos, sentence, pid)]
    used = []
    for p_pos, pid in enumerate(problem_ids):
        done = store.get_artifact(run_id, SENTENCES, pid, default=None)
        cands = store.get_artifact(run_id, CANDIDATES, pid, default=None)
        if not done or done.get("sae") != meta or not cands or cands.get("sae") != meta["fingerprint"]:
            continue  # not computed, or computed with another SAE
        used.append(pid)
        shown.update(f for sent in done["sentences"] for f, _ in sent)
        for f, s, a in zip(cands["feature"], cands["sentence"], cands["activation"]):
            rows.setdefault(f, []).append((a, p_pos, s, pid))
    texts = {pid: [s["text"] for s in store.trace(run_id, pid)["sentences"]] for pid in used}
    features = sorted(shown)
    effects = _token_effects(model, sae, features, n_tokens)
    table = {}
    for f in features:
        best = sorted(rows.get(f, []), key=lambda r: (-r[0], r[1], r[2]))[:n]
        table[str(f)] = {
            "label": labels.get(f),
            **effects.get(f, {"up": None, "down": None}),
            "top_sentences": [[pid, s, a, texts[pid][s]] for a, _, s, pid in best],
        }
    return {"sae": meta, "problems": used, "features": table}


def _token_effects(model, sae, features: list[int], k: int, chunk: int = 64) -> dict[int, dict]:
    """{feature: {"up": [[token, effect], ...], "down": [...]}}; {} when the SAE does not write to the
    residual stream (no logit effects to read)."""
    if not features or sae.cfg.d_output != model.cfg.d_model:
        return {}
    decode = model.tokenizer.decode
    out = {}
    for i in range(0, len(features), chunk):  # [chunk, vocab] at a time: a vocab of 150k x 500 latents is 300 MB
        part = features[i : i + chunk]
        w = logit_weights(model, sae, part)
        up, down = w.topk(k, dim=1), (-w).topk(k, dim=1)
        for j, f in enumerate(part):
            out[f] = {
                "up": [[decode([int(t)]), round(float(v), 5)] for v, t in zip(up.values[j], up.indices[j])],
                "down": [[decode([int(t)]), round(-float(v), 5)] for v, t in zip(down.values[j], down.indices[j])],
            }
    return out
