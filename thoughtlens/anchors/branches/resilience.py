"""Resilience ("fighting back") of one sentence, and counterfactual++ (Thought Branches, Macar et al. 2025).

Reference: ../shared/reference/thought-branches/whistleblowling/measure_determination.py:
fighting_back_experiment (the loop), find_similar_chunk (the match), and analyze_rollouts.py (CF++).

One trial, for sentence S_i of a stored anchors run (up to `max_iterations`, the paper: 20):

    prefix = the text before S_i (the run's rollout prefix)
    repeat:
        continuation = one rollout from prefix
        split it into sentences; best = the sentence with the highest cosine similarity to the ORIGINAL S_i
        if cosine(best) < threshold: the content is gone for good -> stop (abandoned)
        else: it came back -> remove it and everything after it (prefix += continuation up to it) and repeat

Per trial: `iterations` = how many times the content came back (their fighting_back_semantic_iterations),
`persisted` = it was still there at the last iteration (their fighting_back_score_semantic).
Per sentence: resilience = mean iterations (their avg_fighting_back_score_semantic), persistence rate, and

    counterfactual++ = rate(R_{i+1}) - rate(final)          (analyze_rollouts.py, "CF++(i) = rate_base(i+1)
                                                            - rate_fightback_final(i)")

where rate(final) is the outcome rate over each trial's last iteration and R_{i+1} the run's rollouts that
kept S_i. A rollout that states no answer counts as the anchors run counts it (anchors.importance.definitions):
for maths correctness under the paper's conventions it is left out and a rate with no answer at all is 0.0
(their accuracy); under the thoughtlens conventions it counts as wrong; for any other outcome an unknown
value is left out, and a rate with no known value is None (printed "n/a"). The outcome is graded on the text
generated after the original prefix.
Differences from their code: one rollout from the prefix stands for their resample_sentence (first
chunk) + rollout_from_point (continue after it), which draws from the same distribution; no
is_reasoning_node filter; embeddings are thoughtlens's MiniLM (theirs: bert-large-nli-stsb-mean-tokens).
Every continuation is committed to the store as it arrives (condition "resilience"), so a killed job
resumes by replaying the stored ones and sampling only what is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from thoughtlens.anchors.branches.branch_point import branch_point
from thoughtlens.anchors.outcomes.spec import DEFAULT_OUTCOME, OutcomeSpec, grade_texts
from thoughtlens.checks import check_float, check_int
from thoughtlens.errors import ConfigError, StoreError
from thoughtlens.progress import OnProgress, Tracker
from thoughtlens.sample.base import Sampler, SampleRequest, Sampling
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.split import split_sentences

CONDITION = "resilience"
Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> unit vectors [n, d]


@dataclass(frozen=True)
class ResilienceConfig(Sampling):
    """n_trials: independent trials (the paper: 30); max_iterations: resamplings per trial (20);
    similarity_threshold: cosine for "the content came back" (measure_determination.py default 0.6);
    outcome: what CF++ compares (anchors.outcomes.spec spec; "correct" = maths correctness)."""

    n_trials: int = 30
    max_iterations: int = 20
    similarity_threshold: float = 0.6
    max_new_tokens: int = 4096  # Sampling's field with this job's default (temperature 0.6, top_p 0.95, seed 0)
    outcome: str = DEFAULT_OUTCOME

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("--trials (n_trials)", self.n_trials, min=1, example=30)
        check_int("--max-iterations (max_iterations)", self.max_iterations, min=1, example=20)
        check_float("--threshold (similarity_threshold)", self.similarity_threshold, min=-1, max=1, example=0.6)


# How a rollout with no answer (an unknown outcome value) counts in a rate, following the anchors run:
LEFT_OUT = "left out"  # known values only; None when there is none (outcomes other than correctness)
LEFT_OUT_ZERO = "left out; 0 when none answered"  # the paper's accuracy: #correct / #answered, else 0.0
AS_WRONG = "counted as wrong"  # the thoughtlens conventions: #correct / #rollouts


def outcome_rate(values: Sequence[bool | None], no_answer: str = LEFT_OUT) -> float | None:
    """The share of True among `values`, a None (no answer) counted as `no_answer` says."""
    if no_answer == AS_WRONG:
        return sum(bool(v) for v in values) / len(values) if values else None
    known = [v for v in values if v is not None]
    if known:
        return sum(known) / len(known)
    return 0.0 if no_answer == LEFT_OUT_ZERO and values else None


def no_answer_rule(store: RunStore, anchors_run: str, problem_id: str, outcome: OutcomeSpec) -> str:
    """How the anchors run counts a rollout with no answer: its conventions for maths correctness with a
    ground truth (paper: left out, 0.0 when none answered; thoughtlens and pre-1.0: wrong), else left out."""
    if not outcome.is_default:
        return LEFT_OUT
    problems = store.problems(anchors_run)
    gt = problems[problems["problem_id"] == problem_id]["gt_answer"]
    if not len(gt) or not isinstance(gt.iloc[0], str):
        return LEFT_OUT  # no ground truth: nothing is graded
    config = next((r["config"] for r in store.runs() if r["run_id"] == anchors_run), None) or {}
    return LEFT_OUT_ZERO if config.get("conventions") == "paper" else AS_WRONG


@dataclass
class ResilienceResult:
    sentence_index: int
    sentence: str
    iterations: list[int]  # per trial: times the content came back
    persisted: list[bool]  # per trial: still there after the last iteration
    final_values: list[bool | None]  # per trial: outcome of the last iteration
    kept_rate: float | None  # rate over the run's R_{i+1}
    n_samples: int  # continuations drawn (stored) in all
    n_outcome_errors: int = 0
    trials: list[list[dict]] = field(default_factory=list)  # per trial, per iteration: similarity, matched
    no_answer: str = LEFT_OUT  # how a rollout with no answer (unknown value) counts in both rates

    @property
    def resilience(self) -> float:
        return float(np.mean(self.iterations)) if self.iterations else 0.0

    @property
    def persistence_rate(self) -> float:
        return float(np.mean(self.persisted)) if self.persisted else 0.0

    @property
    def final_rate(self) -> float | None:
        return outcome_rate(self.final_values, self.no_answer)

    @property
    def counterfactual_plusplus(self) -> float | None:
        f = self.final_rate
        return None if f is None or self.kept_rate is None else self.kept_rate - f

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "resilience": self.resilience,
            "persistence_rate": self.persistence_rate,
            "final_rate": self.final_rate,
            "counterfactual_plusplus": self.counterfactual_plusplus,
        }


def _embedder() -> Embed:
    from thoughtlens.anchors.importance.similarity import embed_sentences

    return embed_sentences


def _memoised(embed: Embed) -> Embed:
    seen: dict[str, np.ndarray] = {}

    def cached(texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in seen]
        if new:
            seen.update(zip(new, embed(new)))
        return np.stack([seen[t] for t in texts]) if texts else np.zeros((0, 1))

    return cached


def resilience_run_id(anchors_run: str, problem_id: str, cfg: ResilienceConfig) -> str:
    key = json.dumps({"anchors_run": anchors_run, "problem": problem_id, **asdict(cfg)}, sort_keys=True)
    return "resilience-" + hashlib.sha1(key.encode()).hexdigest()[:10]


def measure_resilience(
    sampler: Sampler,
    store: RunStore,
    anchors_run: str,
    problem_id: str,
    sentence_index: int,
    config: ResilienceConfig = ResilienceConfig(),
    *,
    outcome: OutcomeSpec | None = None,
    embed: Embed | None = None,
    on_progress: OnProgress | None = None,
) -> ResilienceResult:
    """Resilience and CF++ of sentence `sentence_index` of a stored anchors run (see the module docstring).
    The continuations go to run `resilience_run_id(...)` of the same store; the result is stored there as
    artifact `resilience_<i>`."""
    point = branch_point(store, anchors_run, problem_id, sentence_index, config.outcome, outcome)
    trace, original, outcome = point.trace, point.original, point.outcome
    if not original.strip():
        raise ConfigError(f"sentence {sentence_index} is empty: pick a sentence with text")
    embed = _memoised(embed or _embedder())  # sentences repeat a lot across trials and iterations
    run_id = resilience_run_id(anchors_run, problem_id, config)
    store.create_run(run_id, {"anchors_run": anchors_run, "problem_id": problem_id, **asdict(config)})
    store.add_problem(run_id, problem_id, "", None)
    done = store.rollouts(run_id, problem_id)
    done = done[(done["condition"] == CONDITION) & (done["sentence_index"] == sentence_index)]
    stored_text = {int(j): t for j, t in zip(done["sample_index"], done["text"])}

    tok = getattr(sampler, "tokenizer", None)
    prefix0 = trace.rollout_prefix(sentence_index, tok if getattr(tok, "is_fast", False) else None)
    ref = embed([original])[0]
    bar = Tracker(on_progress, "resilience", f"sentence {sentence_index}: {config.n_trials} trials")
    bar.add_total(config.n_trials)
    result = ResilienceResult(sentence_index, original, [], [], [], None, 0)
    result.no_answer = no_answer_rule(store, anchors_run, problem_id, outcome)
    cache: dict = {}
    for r in range(config.n_trials):
        prefix, came_back, log, last_generated = prefix0, 0, [], None
        for t in range(config.max_iterations):
            j = r * config.max_iterations + t  # a distinct seed per (trial, iteration)
            text = stored_text.get(j)
            if text is None:
                text = _sample_one(sampler, prefix, j, config)
                store.add_rollout(
                    run_id,
                    problem_id,
                    sentence_index,
                    CONDITION,
                    j,
                    text=text,
                    answer=None,
                    is_correct=None,
                    n_tokens=0,
                    finish_reason="stop",
                )
            result.n_samples += 1
            generated = prefix[len(prefix0) :] + text  # everything written after the original prefix
            last_generated = generated
            spans = [(a, b) for a, b in split_sentences(text) if text[a:b].strip()]
            sims = embed([text[a:b] for a, b in spans]) @ ref if spans else np.zeros(0)
            best = int(np.argmax(sims)) if len(sims) else None
            matched = best is not None and float(sims[best]) >= config.similarity_threshold
            log.append(
                {
                    "iteration": t + 1,
                    "similarity": float(sims[best]) if best is not None else None,
                    "matched": matched,
                    "matched_text": text[slice(*spans[best])] if matched else None,
                }
            )
            if not matched:
                break
            came_back += 1
            prefix = prefix + text[: spans[best][0]].rstrip() if spans[best][0] > 0 else prefix
        (g,) = grade_texts(outcome, [last_generated or ""], cache)
        result.n_outcome_errors += g.error is not None
        result.iterations.append(came_back)
        result.persisted.append(bool(log and log[-1]["matched"]))
        result.final_values.append(g.value)
        result.trials.append(log)
        bar.advance(1)
    result.kept_rate = _kept_rate(store, anchors_run, problem_id, sentence_index + 1, outcome, cache, result.no_answer)
    store.put_artifact(run_id, f"resilience_{sentence_index}", result.to_dict(), problem_id)
    return result


def _sample_one(sampler: Sampler, prefix: str, j: int, cfg: ResilienceConfig) -> str:
    params = cfg.params()
    (c,) = sampler.sample([SampleRequest(prefix, (j,))], params)
    if c.finish_reason == "error":
        raise StoreError(f"the sampler failed on a resilience rollout ({c.error}); resume the job to retry it")
    return c.text


def _kept_rate(
    store: RunStore, run_id: str, problem_id: str, k: int, outcome: OutcomeSpec, cache: dict, no_answer: str = LEFT_OUT
) -> float | None:
    """The outcome rate over the anchors run's rollouts from prefix k (no answer counted as `no_answer` says)."""
    df = store.rollouts(run_id, problem_id)
    df = df[(df["condition"] == "resampled") & (df["sentence_index"] == k) & (df["finish_reason"] != "error")]
    values = [g.value for g in grade_texts(outcome, [t if isinstance(t, str) else "" for t in df["text"]], cache)]
    return outcome_rate(values, no_answer)
