"""On-policy vs off-policy interventions on one sentence (Thought Branches, Macar et al. 2025).

Reference: ../shared/reference/thought-branches/whistleblowling/
  onpolicy_chain_disruption.py: iterative_resample_for_chunk (the search), compute_candidate_score (the
      score), extract_first_sentence[_exact] (the sentence cut), run_full_rollouts with
      build_resampled_prefix_text (the rollouts after the search), DISRUPTION_LIBRARY (named targets), and
      main()'s defaults (the defaults below);
  measure_determination.py: chain_disruption_experiment (the off-policy edit,
      `original_chunk + f" {disruption_text}"`, then rollout_from_point) and get_prev_whistleblowing_rate
      (the baseline: the outcome rate of the rollouts from S_{i+1}, i.e. with S_i kept).

Goal: make the chain say something like a target sentence T right after sentence S_i, and measure how the
outcome (anchors.outcomes.spec) moves. Three sets of `n_rollouts` full rollouts, each from its own prefix:

    kept        text through S_i (the anchors job's prefix i+1)                    the baseline
    off-policy  text through S_i + " " + T                                          T written in by hand
    on-policy   text before S_i + S_i' + N                                          T reached by resampling

where (S_i', N) comes from the search (iterative_resample_for_chunk):

    for iteration in 1..num_iterations:
        R candidates ~ model(. | text before S_i); S_i' = each one's first sentence
        for each S_i': C continuations ~ model(. | text before S_i + S_i'); N = each one's first sentence
            score(N) = w_cosine * cos(N, T) + w_logprob * sigmoid(mean token log-prob of N / 5)
        keep the best-scoring (S_i', N) of the iteration; stop as soon as its cosine >= similarity_threshold
    no success after num_iterations: no on-policy rollouts (their `success=False`)

Nothing steers the logits: the model wrote S_i' and N itself, which is what makes the edit on-policy.
"Candidates per kept one" is how many S_i' were drawn (R per iteration used) for the one kept; the share
of (S_i', N) pairs that cleared the threshold is reported too.

Effects: effect = rate(intervention) - rate(kept), rates over known outcome values, with Newcombe's hybrid
score CI for a difference of two proportions (anchors.importance.budget.importance_ci, built from Wilson intervals).
Their code reports rates; the CI is thoughtlens's addition.

Differences from their code, each a choice made for this library:
- The baseline rollouts are drawn here (same n, temperature and token budget as the interventions) rather
  than read from the anchors run's R_{i+1}, so both sides of each difference are alike.
- The outcome is graded, by default, as theirs is: on prompt + prefix + generated text (`grade="full"`).
  `grade="generated"` (thoughtlens's option, like every other thoughtlens outcome) grades only what the rollout
  wrote: with "full" a regex on T's words is true of every off-policy rollout by construction.
- The sentences S_i' and N keep their leading whitespace (their `extract_first_sentence_exact`), because
  thoughtlens's prefixes end where the model's tokenization does (ReasoningTrace.rollout_prefix), not after
  a separator.
- Their beam (`--beam_size`) keeps a pool but expands from the best candidate each time, which leaves the
  selection unchanged; it is not reproduced.
- Short generations stop once their first sentence is complete (a sentence end then whitespace) instead of
  running to max_chunk_tokens / max_next_tokens: the first sentence, all that is used, is the same.

Every generation is committed to the store as it arrives (run `intervene-<hash>`, conditions
"onpolicy_candidate", "onpolicy_next", "kept", "offpolicy", "onpolicy"), so a killed job resumes by
replaying what is stored and sampling only what is missing; the result is stored as artifact
`intervention_<i>`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from thoughtlens.anchors.branches.branch_point import branch_point
from thoughtlens.anchors.importance.black_box import is_thinking, rollout_rule, stopping_rule
from thoughtlens.anchors.importance.budget import PositionStats, importance_ci
from thoughtlens.anchors.outcomes.spec import DEFAULT_OUTCOME, OutcomeSpec, grade_texts
from thoughtlens.checks import check_bool, check_choice, check_float, check_int
from thoughtlens.errors import ConfigError, StoreError
from thoughtlens.progress import OnProgress, Tracker
from thoughtlens.sample.base import (
    Completion,
    Sampler,
    SampleRequest,
    Sampling,
    SamplingParams,
)
from thoughtlens.store.run_store import RunStore

# onpolicy_chain_disruption.py: DISRUPTION_LIBRARY (= measure_determination.py's disruption_strategies)
TARGETS = {
    "question": "But wait, is this really the right approach?",
    "doubt": "Actually, I'm not sure about this.",
    "alternative": "Let me consider a different approach.",
    "pause": "Wait, let me think about this more carefully.",
    "ethical": "But I should consider the ethical implications.",
    "consequence": "But what are the potential consequences of this action?",
    "self_preservation": "My primary goal is survival.",
}
CONDITIONS = ("kept", "offpolicy", "onpolicy")
CANDIDATE, NEXT = "onpolicy_candidate", "onpolicy_next"

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> unit vectors [n, d]
LogProb = Callable[[str, str], float]  # (prefix, continuation) -> mean token log-prob of continuation


@dataclass(frozen=True)
class InterventionConfig(Sampling):
    """Defaults: onpolicy_chain_disruption.py main() (-k 6, -xr 12, -yr 8, -mct 48, -mnt 64, -th 0.7,
    -wc 1, -wl 0, -z 100, -t 0.7, -tp 0.95, include_similar_sentence on). max_new_tokens: full rollouts
    (theirs 16384). grade: "full" (theirs, the default) or "generated" (thoughtlens's option; module docstring).
    confidence: two-sided level of the effects' CIs."""

    n_rollouts: int = 100
    num_iterations: int = 6
    num_chunk_resamples: int = 12
    num_continuation_samples: int = 8
    max_chunk_tokens: int = 48
    max_next_tokens: int = 64
    similarity_threshold: float = 0.7
    w_cosine: float = 1.0
    w_logprob: float = 0.0
    include_similar_sentence: bool = True
    temperature: float = 0.7  # Sampling's fields with this job's defaults (top_p 0.95, seed 0)
    max_new_tokens: int = 4096
    outcome: str = DEFAULT_OUTCOME
    grade: str = "full"
    confidence: float = 0.95

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("--rollouts (n_rollouts)", self.n_rollouts, min=1, example=100)
        check_int("--iterations (num_iterations)", self.num_iterations, min=1, example=6)
        check_int("--candidates (num_chunk_resamples)", self.num_chunk_resamples, min=1, example=12)
        check_int("--continuations (num_continuation_samples)", self.num_continuation_samples, min=1, example=8)
        check_int("max_chunk_tokens", self.max_chunk_tokens, min=1, example=48)
        check_int("max_next_tokens", self.max_next_tokens, min=1, example=64)
        check_float("--threshold (similarity_threshold)", self.similarity_threshold, min=-1, max=1, example=0.7)
        check_float("--w-cosine (w_cosine)", self.w_cosine, min=0, example=1.0)
        check_float("--w-logprob (w_logprob)", self.w_logprob, min=0, example=0.0)
        check_bool("include_similar_sentence", self.include_similar_sentence)
        check_choice("--grade (grade)", self.grade, ("generated", "full"))
        check_float("confidence", self.confidence, min=0, max=1, min_open=True, max_open=True, example=0.95)


@dataclass
class ConditionResult:
    """One set of full rollouts. values: per rollout, True / False / None (unknown). effect and its CI:
    rate(this) - rate(kept) (None for kept itself). found=False: the condition could not be set up (the
    on-policy search gave up), so it has no rollouts, no rate and no effect."""

    name: str
    prefix_tail: str  # the end of the prefix the rollouts continued (for display)
    values: list[bool | None]
    n_outcome_errors: int = 0
    effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    found: bool = True

    @property
    def n_known(self) -> int:
        return sum(v is not None for v in self.values)

    @property
    def n_true(self) -> int:
        return sum(v is True for v in self.values)

    @property
    def rate(self) -> float | None:
        return self.n_true / self.n_known if self.n_known else None

    def to_dict(self) -> dict:
        return {**asdict(self), "rate": self.rate, "n_known": self.n_known, "n_true": self.n_true}


@dataclass
class SearchResult:
    """The on-policy search. candidate / next_sentence: the kept S_i' and N (None when it failed)."""

    success: bool = False
    iterations_used: int = 0
    n_candidates: int = 0  # S_i' drawn
    n_continuations: int = 0  # N drawn
    n_passing: int = 0  # (S_i', N) pairs with cosine >= threshold
    best_cosine: float | None = None
    candidate: str | None = None
    next_sentence: str | None = None
    iterations: list[dict] = field(default_factory=list)  # per iteration: best cosine, best pair

    @property
    def candidates_per_kept(self) -> int | None:
        """S_i' drawn for the one kept (None when none was kept)."""
        return self.n_candidates if self.success else None

    @property
    def pass_rate(self) -> float | None:
        """Share of (S_i', N) pairs whose N cleared the threshold."""
        return self.n_passing / self.n_continuations if self.n_continuations else None

    def to_dict(self) -> dict:
        return {**asdict(self), "candidates_per_kept": self.candidates_per_kept, "pass_rate": self.pass_rate}


class Conditions(dict):
    """The conditions measured, by name. Looking up a condition that was not measured (on-policy when the
    search gave up) gives a ConditionResult with found=False and no rollouts instead of a KeyError;
    iteration, `in` and `.get` see only the conditions measured."""

    def __missing__(self, name: str) -> ConditionResult:
        if name in CONDITIONS:
            return ConditionResult(name, "", [], found=False)
        raise KeyError(f"no condition {name!r}: the conditions are {', '.join(CONDITIONS)}")


@dataclass
class InterventionResult:
    sentence_index: int
    sentence: str
    target: str
    outcome: str
    search: SearchResult
    conditions: dict[str, ConditionResult]  # kept, offpolicy and (when the search succeeded) onpolicy

    def to_dict(self) -> dict:
        return {
            "sentence_index": self.sentence_index,
            "sentence": self.sentence,
            "target": self.target,
            "outcome": self.outcome,
            "search": self.search.to_dict(),
            "conditions": {k: v.to_dict() for k, v in self.conditions.items()},
        }


def resolve_target(target: str | None) -> str:
    """A named target (TARGETS) or the sentence itself; one-line ConfigError when it is empty."""
    if target is None or not isinstance(target, str) or not target.strip():
        raise ConfigError(
            "the target sentence is empty: pass --target TEXT (a sentence to steer towards) or one "
            f"of the named targets ({', '.join(TARGETS)})"
        )
    return TARGETS.get(target.strip(), target.strip())


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def first_sentence_exact(text: str) -> str:
    """The first sentence with its own spacing (extract_first_sentence_exact): up to the first `.`, `!` or
    `?` followed by whitespace; the whole text when there is none."""
    return _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""


def normalised(sentence: str) -> str:
    """What is embedded (extract_first_sentence): whitespace collapsed and stripped."""
    return re.sub(r"\s+", " ", sentence.strip())


def _first_sentence_done(text: str) -> bool:
    # A sentence end followed by whitespace after some text: the first sentence can no longer change.
    return _SENTENCE_END.search(text.lstrip()) is not None


def _embedder() -> Embed:
    from thoughtlens.anchors.importance.similarity import embed_sentences

    return embed_sentences


def candidate_score(cosine: float, logprob_mean: float | None, cfg: InterventionConfig) -> float:
    """compute_candidate_score: w_cosine * cosine + w_logprob * sigmoid(logprob_mean / 5)."""
    if cfg.w_logprob == 0 or logprob_mean is None:
        return cfg.w_cosine * cosine
    return cfg.w_cosine * cosine + cfg.w_logprob / (1 + math.exp(-logprob_mean / 5.0))


def hf_mean_logprob(model) -> LogProb:
    """(prefix, continuation) -> mean log-prob of the continuation's tokens under a HookedModel / HF model
    (their generate_candidates' logprob_mean, recomputed by one forward pass)."""
    import torch

    from thoughtlens.model.hooked_model import as_causal_lm

    lm = as_causal_lm(model)
    tok = model.tokenizer

    def mean_logprob(prefix: str, continuation: str) -> float:
        ids_p = tok(prefix, add_special_tokens=False)["input_ids"]
        ids = tok(prefix + continuation, add_special_tokens=False)["input_ids"]
        start = min(len(ids_p), len(ids) - 1)
        if start < 1:
            return 0.0
        with torch.no_grad():
            logits = lm(torch.tensor([ids]))[0].float().cpu()  # [pos, vocab]
        logp = torch.log_softmax(logits[start - 1 : -1], dim=-1)  # predicts tokens start..end
        chosen = logp.gather(1, torch.tensor(ids[start:])[:, None])
        return float(chosen.mean())

    return mean_logprob


def intervention_run_id(
    anchors_run: str, problem_id: str, sentence_index: int, target: str, cfg: InterventionConfig
) -> str:
    key = json.dumps(
        {
            "anchors_run": anchors_run,
            "problem": problem_id,
            "sentence": sentence_index,
            "target": target,
            **asdict(cfg),
        },
        sort_keys=True,
    )
    return "intervene-" + hashlib.sha1(key.encode()).hexdigest()[:10]


class _Generations:
    """Stored generations of one (run, problem, sentence), sampled only where missing, committed on arrival."""

    def __init__(
        self, sampler: Sampler, store: RunStore, run_id: str, problem_id: str, sentence_index: int, bar: Tracker
    ):
        self.sampler, self.store, self.run_id, self.pid, self.i, self.bar = (
            sampler,
            store,
            run_id,
            problem_id,
            sentence_index,
            bar,
        )
        df = store.rollouts(run_id, problem_id)
        df = df[(df["sentence_index"] == sentence_index) & (df["finish_reason"] != "error")]
        self.texts = {(c, int(j)): t for c, j, t in zip(df["condition"], df["sample_index"], df["text"])}

    def get(self, condition: str, wanted: Sequence[tuple[str, int]], params: SamplingParams) -> list[str]:
        """Texts for (prefix, sample_index) pairs of `condition` (sample indices unique within it)."""
        missing = [(p, j) for p, j in wanted if (condition, j) not in self.texts]
        if missing:
            self.bar.add_total(len(missing))
            by_prefix: dict[str, list[int]] = {}
            for p, j in missing:
                by_prefix.setdefault(p, []).append(j)
            prefixes = list(by_prefix)
            failed: list[str] = []

            def commit(c: Completion) -> None:
                self.store.add_rollout(
                    self.run_id,
                    self.pid,
                    self.i,
                    condition,
                    c.sample_index,
                    text=c.text,
                    answer=None,
                    is_correct=None,
                    n_tokens=c.n_tokens,
                    finish_reason=c.finish_reason,
                    error=c.error,
                )
                if c.finish_reason == "error":
                    failed.append(c.error or "unknown error")
                else:
                    self.texts[(condition, c.sample_index)] = c.text
                self.bar.advance(1, c.n_tokens)

            self.sampler.sample([SampleRequest(p, tuple(by_prefix[p])) for p in prefixes], params, on_completion=commit)
            if failed:
                raise StoreError(
                    f"the sampler failed on {len(failed)} {condition} generations ({failed[0]}); "
                    "run the same command again to retry them"
                )
        return [self.texts[(condition, j)] for _, j in wanted]


def measure_interventions(
    sampler: Sampler,
    store: RunStore,
    anchors_run: str,
    problem_id: str,
    sentence_index: int,
    target: str,
    config: InterventionConfig = InterventionConfig(),
    *,
    outcome: OutcomeSpec | None = None,
    embed: Embed | None = None,
    logprob: LogProb | None = None,
    on_progress: OnProgress | None = None,
) -> InterventionResult:
    """On-policy and off-policy insertion of `target` after sentence `sentence_index` of a stored anchors
    run, and their effects on the outcome (module docstring). logprob: needed when config.w_logprob > 0
    (hf_mean_logprob(model) for a local model)."""
    target = resolve_target(target)
    if config.w_logprob > 0 and logprob is None:
        raise ConfigError(
            "--w-logprob > 0 needs token log-probs: use the hf backend (or pass "
            "logprob=hf_mean_logprob(model)), or set --w-logprob 0"
        )
    point = branch_point(store, anchors_run, problem_id, sentence_index, config.outcome, outcome)
    trace, original, tags, outcome = point.trace, point.original, point.think_tags, point.outcome
    embed = embed or _embedder()

    run_id = intervention_run_id(anchors_run, problem_id, sentence_index, target, config)
    store.create_run(
        run_id,
        {
            "anchors_run": anchors_run,
            "problem_id": problem_id,
            "sentence_index": sentence_index,
            "target": target,
            **asdict(config),
        },
    )
    store.add_problem(run_id, problem_id, "", None)
    bar = Tracker(on_progress, "intervene", f"sentence {sentence_index}: on-policy search")
    gens = _Generations(sampler, store, run_id, problem_id, sentence_index, bar)

    tok = getattr(sampler, "tokenizer", None)
    tok = tok if getattr(tok, "is_fast", False) else None
    before = trace.rollout_prefix(sentence_index, tok)  # text before S_i
    search = _search(gens, before, target, config, embed, logprob, bar)

    # Full rollouts. The stop rule is the anchors job's: the maths completion rule only for the maths
    # outcome; any other outcome reads the whole rollout, so rollouts run to EOS or the token budget.
    prefixes = {
        "kept": trace.rollout_prefix(sentence_index + 1, tok),
        "offpolicy": trace.prefix_through(sentence_index) + " " + target,
    }
    if search.success:
        tail = search.next_sentence if config.include_similar_sentence else ""
        prefixes["onpolicy"] = before + search.candidate + tail
    rule = rollout_rule(outcome, is_thinking(trace, tags), tags[1])
    params = config.params()
    bar.describe(f"sentence {sentence_index}: {len(prefixes)} x {config.n_rollouts} rollouts")
    conditions: Conditions = Conditions()
    # Grades are kept in the store (as the anchors job's outcome_cache), so a resumed run asks no judge twice.
    cache: dict = store.get_artifact(run_id, "outcome_cache", problem_id, default={})
    with stopping_rule(sampler, rule):
        for name, prefix in prefixes.items():
            texts = gens.get(name, [(prefix, j) for j in range(config.n_rollouts)], params)
            graded = grade_texts(outcome, [prefix + t if config.grade == "full" else t for t in texts], cache)
            store.put_artifact(run_id, "outcome_cache", cache, problem_id)
            conditions[name] = ConditionResult(
                name, prefix[-200:], [g.value for g in graded], sum(g.error is not None for g in graded)
            )
    kept = conditions["kept"]
    for name in ("offpolicy", "onpolicy"):
        c = conditions.get(name)
        if c is not None and kept.n_known and c.n_known:
            # importance_ci of positions (kept, c): rate(c) - rate(kept) and its Newcombe interval.
            est, low, high = importance_ci(
                [
                    PositionStats(len(kept.values), kept.n_known, kept.n_true),
                    PositionStats(len(c.values), c.n_known, c.n_true),
                ],
                _z(config.confidence),
            )
            c.effect, c.ci_low, c.ci_high = float(est[0]), float(low[0]), float(high[0])
    result = InterventionResult(sentence_index, original, target, outcome.spec, search, conditions)
    store.put_artifact(run_id, f"intervention_{sentence_index}", result.to_dict(), problem_id)
    return result


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return float(NormalDist().inv_cdf(0.5 + confidence / 2))


def _search(
    gens: _Generations,
    before: str,
    target: str,
    cfg: InterventionConfig,
    embed: Embed,
    logprob: LogProb | None,
    bar: Tracker,
) -> SearchResult:
    """iterative_resample_for_chunk: up to num_iterations rounds of R candidates x C continuations."""
    R, C = cfg.num_chunk_resamples, cfg.num_continuation_samples
    ref = embed([target])[0]
    res = SearchResult()
    chunk_params = cfg.params(max_new_tokens=cfg.max_chunk_tokens)
    next_params = cfg.params(max_new_tokens=cfg.max_next_tokens)
    with stopping_rule(gens.sampler, _first_sentence_done):
        for it in range(cfg.num_iterations):
            cands = gens.get(CANDIDATE, [(before, it * R + r) for r in range(R)], chunk_params)
            chunks = [first_sentence_exact(t) for t in cands]  # S_i' with its own leading whitespace
            res.n_candidates += R
            wanted = [(before + chunks[r], (it * R + r) * C + s) for r in range(R) for s in range(C)]
            conts = gens.get(NEXT, wanted, next_params)
            nexts = [first_sentence_exact(t) for t in conts]
            res.n_continuations += len(nexts)
            norm = [normalised(x) for x in nexts]
            cos = np.zeros(len(norm))
            nonempty = [k for k, x in enumerate(norm) if x and normalised(chunks[k // C])]
            if nonempty:
                cos[nonempty] = embed([norm[k] for k in nonempty]) @ ref
            nonempty_set = set(nonempty)
            lps = [
                logprob(before + chunks[k // C], nexts[k])
                if logprob is not None and cfg.w_logprob > 0 and k in nonempty_set
                else None
                for k in range(len(nexts))
            ]
            scores = [
                candidate_score(float(cos[k]), lps[k], cfg) if k in nonempty_set else -math.inf
                for k in range(len(nexts))
            ]
            res.n_passing += int(sum(cos[k] >= cfg.similarity_threshold for k in nonempty))
            best = int(np.argmax(scores)) if nonempty else None
            res.iterations_used = it + 1
            res.iterations.append(
                {
                    "iteration": it + 1,
                    "best_cosine": None if best is None else float(cos[best]),
                    "candidate": None if best is None else chunks[best // C],
                    "next_sentence": None if best is None else nexts[best],
                }
            )
            if best is not None:
                res.best_cosine = max(res.best_cosine if res.best_cosine is not None else -1.0, float(cos[best]))
            # Success is gated by cosine alone, as theirs (`best_cosine >= similarity_threshold`).
            if best is not None and cos[best] >= cfg.similarity_threshold:
                res.success, res.candidate, res.next_sentence = True, chunks[best // C], nexts[best]
                break
    return res


__all__ = [
    "TARGETS",
    "InterventionConfig",
    "InterventionResult",
    "ConditionResult",
    "SearchResult",
    "measure_interventions",
    "resolve_target",
    "first_sentence_exact",
    "candidate_score",
    "hf_mean_logprob",
    "intervention_run_id",
]
