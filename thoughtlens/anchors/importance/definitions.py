"""Every black-box Thought Anchors metric, defined once, with the paper's code it reproduces.

Bogdan et al. 2025, "Thought Anchors"; reference code in ../shared/reference/thought-anchors/
(cited below as `analyze_rollouts.py:function`). Two sets of conventions:

- "paper" (the default): the paper's code, line for line, including its edge cases, so that numbers can
  be compared with the published `chunks_labeled.json`.
- "thoughtlens": the pre-1.0 choices of this library (kept as a named option): KL(kept || resampled)
  with Jeffreys smoothing and "no answer" as an outcome of its own, missing answers counted as wrong,
  and None (not 0.0) where a metric is undefined.

Notation. A trace has sentences S_0..S_{n-1}. R_k: rollouts sampled from the prefix before S_k (S_k and
later removed), k = 0..n-1; R_n: rollouts from the whole reasoning (thoughtlens samples it; the paper
has no such set). F_k: forced-answer rollouts from the same prefixes. "Answered" = the rollout has an
answer (the paper: `sol["answer"] != ""`).

Paper conventions, per sentence i (`analyze_rollouts.py:process_chunk_importance`):

    accuracy[i]   = #correct / #answered in R_i; 0.0 when nothing answered       (analyze_problem)
    resampling_importance_accuracy = accuracy[i+1] - accuracy[i]
                                                    (calculate_resampling_importance_accuracy)
    resampling_importance_kl       = KL(D(R_i) || D(R_{i+1}))  (calculate_resampling_importance_kl)
    counterfactual_importance_accuracy = acc(dissimilar) - acc(answered R_{i+1})
                                                    (calculate_counterfactual_importance_accuracy)
        dissimilar = answered rollouts of R_i whose first sentence has cosine < threshold (0.8) to S_i
    counterfactual_importance_kl   = KL(D(dissimilar) || D(answered R_{i+1} + similar))
        similar = the other answered rollouts of R_i (`use_similar_chunks=True`, the CLI default)
                                                    (calculate_counterfactual_importance_kl)
    forced_importance_accuracy     = facc[i+1] - facc[i], facc = #correct / #answered in F_k
                                                    (calculate_forced_importance_accuracy)
    forced_importance_kl           = KL(D(F_i) || D(F_{i+1}))      (calculate_forced_importance_kl)
    different_trajectories_fraction = #dissimilar / #answered in R_i
    overdeterminedness             = 1 - #distinct first sentences / #answered in R_i
                                     (both in calculate_counterfactual_importance_accuracy)

    KL (calculate_kl_divergence, use_prob_true=False as their CLI sets it): over normalised answers of
    answered rollouts, p(a) = (c_1(a) + alpha) / (N_1 + alpha V) on the union V of both supports,
    alpha = 1e-9, clipped at 0; 0.0 when either side has no answer.

    Edge cases, as in their code: the last sentence has no "next" rollout set, so every metric that
    compares with R_{i+1} (and, there, also different_trajectories_fraction and overdeterminedness) is
    0.0; a counterfactual with no dissimilar resample, or no answered rollout kept, is 0.0; a KL with an
    empty side is 0.0. The paper also skips chunks shorter than 4 characters (`analyze_problem`'s
    `valid_chunks`; "next" is then the next valid chunk); thoughtlens's splitters never produce them.
    Convergence filter: the published analyze_rollouts.py and step_attribution.py contain none (no
    restriction to sentences before the answer settles), so every sentence gets its metrics here too.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from thoughtlens.trace.answers import normalize_answer

Conventions = Literal["paper", "thoughtlens"]
CONVENTIONS: tuple[str, ...] = ("paper", "thoughtlens")
DEFAULT_CONVENTIONS: Conventions = "paper"
PAPER_KL_ALPHA = 1e-9  # analyze_rollouts.py:calculate_kl_divergence, laplace_smooth=False
THOUGHTLENS_KL_ALPHA = 0.5  # Jeffreys prior: finite, moderate KL on disjoint supports
PRE_1_0 = "pre-1.0 conventions"
NO_ANSWER = "<no answer>"
# Answers repeat a lot (100 rollouts x hundreds of sentences, a handful of distinct answers): normalise once.
_normalize = functools.lru_cache(maxsize=65536)(normalize_answer)


@dataclass(frozen=True)
class Outcome:
    """What one rollout ended with. first_sentence: the first sentence it generated (None if none)."""

    answer: str | None
    is_correct: bool | None
    first_sentence: str | None = None


def check_conventions(conventions: str) -> None:
    if conventions not in CONVENTIONS:
        raise ValueError(
            f"unknown conventions {conventions!r}; use 'paper' (the paper's code, the default) "
            "or 'thoughtlens' (the pre-1.0 definitions)"
        )


def default_kl_alpha(conventions: str) -> float:
    check_conventions(conventions)
    return PAPER_KL_ALPHA if conventions == "paper" else THOUGHTLENS_KL_ALPHA


def conventions_label(config: dict | None) -> str:
    """How a stored run's metrics were defined, for `anchors show` and the page footnote.

    Runs written before conventions were recorded say "pre-1.0 conventions" (the thoughtlens set
    with alpha = their kl_alpha, usually 0.5)."""
    config = config or {}
    conventions = config.get("conventions")
    if conventions is None:
        return PRE_1_0
    alpha = config.get("kl_alpha")
    alpha_text = "" if alpha is None else f", KL smoothing alpha={alpha:g}"
    what = "the paper's definitions (analyze_rollouts.py)" if conventions == "paper" else "thoughtlens conventions"
    return f"{conventions}: {what}{alpha_text}"


# Where thoughtlens differs from the paper's pipeline even under "paper" conventions (docs/validation.md).
PAPER_MODE_DEVIATIONS = (
    "answers are normalised and compared with thoughtlens's normalize_answer / answers_equivalent "
    "(the paper: utils.py normalize_latex / check_answer)",
    "a rollout prefix keeps the trace's own whitespace and ends at a token boundary of the model's tokenizer "
    "(the paper joins chunks with single spaces and strips the prefix)",
    "a reasoning rollout stops once an answer follows </think>, and its answer is the one after </think> "
    "(the paper samples to EOS and takes the first \\boxed{} anywhere)",
    "a forced answer is read up to the brace that balances \\boxed{, within forced_max_new_tokens",
    "the default sentence splitter is thoughtlens's; split_style='paper' reproduces the published chunks",
)


def conventions_note(config: dict | None) -> str:
    """One paragraph for the report page: which definitions the run used and how they differ from the paper."""
    label = conventions_label(config)
    if (config or {}).get("synthetic"):
        return "Synthetic data (report.synthetic): no metric definitions apply."
    if label == PRE_1_0:
        return (
            "Metric definitions: pre-1.0 conventions (KL(kept || resampled) with Jeffreys smoothing, "
            "missing answers counted as wrong, counterfactual = kept - dissimilar): not comparable with "
            "the paper's numbers; re-run with conventions='paper'."
        )
    if (config or {}).get("conventions") == "thoughtlens":
        return (
            f"Metric definitions: {label}. Differs from the paper: KL(kept || resampled), 'no answer' is an "
            "outcome, missing answers count as wrong, counterfactual = kept - dissimilar, undefined values "
            "are gaps, the last sentence is compared with rollouts from the whole reasoning."
        )
    return f"Metric definitions: {label}. Remaining differences: " + "; ".join(PAPER_MODE_DEVIATIONS) + "."


# ---------------------------------------------------------------- the paper's conventions


def answered(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Rollouts with an answer (the paper's `sol["answer"] != ""` filter in analyze_problem)."""
    return [o for o in outcomes if o.answer is not None and o.answer.strip() != ""]


def paper_accuracy(outcomes: Sequence[Outcome]) -> float | None:
    """#correct / #answered; 0.0 when none answered (analyze_rollouts.py:analyze_problem).
    None only when no rollout was graded at all (no ground truth), which the paper never has."""
    if outcomes and all(o.is_correct is None for o in outcomes):
        return None
    graded = [o for o in answered(outcomes) if o.is_correct is not None]
    return sum(o.is_correct is True for o in graded) / len(graded) if graded else 0.0


def paper_answer_counts(outcomes: Sequence[Outcome]) -> Counter:
    """Counts of normalised answers; rollouts without an answer (or normalising to "") are left out."""
    counts: Counter = Counter()
    for o in outcomes:
        a = _normalize(o.answer) if o.answer is not None else ""
        if a:
            counts[a] += 1
    return counts


def paper_kl(p_counts: Counter, q_counts: Counter, alpha: float = PAPER_KL_ALPHA) -> float:
    """KL(P || Q) in nats, analyze_rollouts.py:calculate_kl_divergence (use_prob_true=False).

    Additive smoothing over the union V of both supports; 0.0 when either side is empty."""
    if alpha <= 0:
        raise ValueError(f"KL smoothing alpha must be > 0 (got {alpha}); the paper uses 1e-9")
    n_p, n_q = sum(p_counts.values()), sum(q_counts.values())
    if n_p == 0 or n_q == 0:
        return 0.0
    support = set(p_counts) | set(q_counts)
    zp, zq = n_p + alpha * len(support), n_q + alpha * len(support)
    kl = 0.0
    for a in support:
        p = (p_counts.get(a, 0) + alpha) / zp
        q = (q_counts.get(a, 0) + alpha) / zq
        kl += p * math.log(p / q)
    return max(0.0, kl)


def paper_sentence_row(
    i: int,
    n: int,
    resampled: Sequence[Sequence[Outcome]],
    forced: Sequence[Sequence[Outcome]] | None,
    sims: np.ndarray,
    threshold: float,
    alpha: float,
) -> dict[str, float | None]:
    """The paper's metrics for sentence i (see the module docstring). sims: `[len(R_i)]` cosine
    similarity of each rollout's first sentence to S_i, NaN where the rollout wrote none."""
    r_i = resampled[i]
    has_next = i + 1 < n  # the paper samples no rollouts with the last sentence kept
    row: dict[str, float | None] = {"accuracy": paper_accuracy(r_i)}
    current = [(o, s) for o, s in zip(r_i, sims) if o.answer is not None and o.answer.strip() != ""]
    pairs = [(o, s) for o, s in current if not np.isnan(s)]  # both sentences present, as their cache check
    dissimilar = [o for o, s in pairs if s < threshold]
    similar = [o for o, s in pairs if s >= threshold]
    zeros = dict.fromkeys(
        (
            "resampling_importance_accuracy",
            "resampling_importance_kl",
            "counterfactual_importance_accuracy",
            "counterfactual_importance_kl",
            "different_trajectories_fraction",
            "overdeterminedness",
        ),
        0.0,
    )
    row.update(zeros)
    if has_next:
        kept = resampled[i + 1]
        next_answered = answered(kept)
        acc_kept = paper_accuracy(kept)
        row["resampling_importance_accuracy"] = (
            None if acc_kept is None or row["accuracy"] is None else acc_kept - row["accuracy"]
        )
        row["resampling_importance_kl"] = paper_kl(paper_answer_counts(r_i), paper_answer_counts(kept), alpha)
        row["different_trajectories_fraction"] = len(dissimilar) / len(current) if current else 0.0
        firsts = [o.first_sentence for o, _ in pairs]
        row["overdeterminedness"] = 1.0 - len(set(firsts)) / len(firsts) if firsts else 0.0
        if dissimilar and next_answered:
            acc_d, acc_n = paper_accuracy(dissimilar), paper_accuracy(next_answered)
            row["counterfactual_importance_accuracy"] = None if acc_d is None or acc_n is None else acc_d - acc_n
            row["counterfactual_importance_kl"] = paper_kl(
                paper_answer_counts(dissimilar), paper_answer_counts(list(next_answered) + similar), alpha
            )
    row["forced_importance_accuracy"] = None
    row["forced_importance_kl"] = None
    if forced is not None:
        row["forced_importance_accuracy"] = 0.0
        row["forced_importance_kl"] = 0.0
        if has_next:
            fa, fb = paper_accuracy(forced[i]), paper_accuracy(forced[i + 1])
            row["forced_importance_accuracy"] = None if fa is None or fb is None else fb - fa
            row["forced_importance_kl"] = paper_kl(
                paper_answer_counts(forced[i]), paper_answer_counts(forced[i + 1]), alpha
            )
    row["n_rollouts"] = float(len(r_i))
    row["n_dissimilar"] = float(len(dissimilar))
    return row


# ---------------------------------------------------------------- thoughtlens (pre-1.0) conventions


def thoughtlens_answer_counts(outcomes: Sequence[Outcome]) -> Counter:
    """Counts of normalised answers; a missing answer is its own outcome, NO_ANSWER."""
    return Counter(_normalize(o.answer) if o.answer is not None else NO_ANSWER for o in outcomes)


def thoughtlens_accuracy(outcomes: Sequence[Outcome]) -> float | None:
    """Share of correct rollouts (a missing answer counts as wrong); None for no rollouts."""
    if not outcomes:
        return None
    return sum(bool(o.is_correct) for o in outcomes) / len(outcomes)


def smoothed_kl(p_counts: Counter, q_counts: Counter, alpha: float = THOUGHTLENS_KL_ALPHA) -> float | None:
    """KL(P || Q) in nats between two answer-count tables, with additive (Jeffreys, alpha=0.5) smoothing.

    Both distributions are smoothed over the union of their outcomes:
        p(a) = (count_p(a) + alpha) / (N_p + alpha * |union|)
    so KL stays finite when the supports are disjoint, and shrinks towards 0 as evidence gets thin
    (the paper's 1e-9 smoothing instead gives ~20 nats for any disjoint pair). None if either side is empty.
    """
    if alpha <= 0:
        raise ValueError(f"KL smoothing alpha must be > 0 (got {alpha}); 0.5 is the thoughtlens default")
    n_p, n_q = sum(p_counts.values()), sum(q_counts.values())
    if n_p == 0 or n_q == 0:
        return None
    return paper_kl(p_counts, q_counts, alpha)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def thoughtlens_sentence_row(
    i: int,
    resampled: Sequence[Sequence[Outcome]],
    forced: Sequence[Sequence[Outcome]] | None,
    sims: np.ndarray,
    threshold: float,
    alpha: float,
) -> dict[str, float | None]:
    """The pre-1.0 thoughtlens metrics for sentence i: kept = R_{i+1} (R_n for the last sentence)."""
    from thoughtlens.anchors.importance.similarity import dissimilar_mask, overdeterminedness

    r_i, kept = resampled[i], resampled[i + 1]
    firsts = [o.first_sentence for o in r_i]
    mask = dissimilar_mask(sims, threshold)
    different = [o for o, d in zip(r_i, mask) if d]
    row = {
        "accuracy": thoughtlens_accuracy(r_i),
        "resampling_importance_accuracy": _diff(thoughtlens_accuracy(kept), thoughtlens_accuracy(r_i)),
        "resampling_importance_kl": smoothed_kl(thoughtlens_answer_counts(kept), thoughtlens_answer_counts(r_i), alpha),
        "counterfactual_importance_accuracy": _diff(thoughtlens_accuracy(kept), thoughtlens_accuracy(different)),
        "counterfactual_importance_kl": smoothed_kl(
            thoughtlens_answer_counts(kept), thoughtlens_answer_counts(different), alpha
        ),
        "forced_importance_accuracy": None,
        "forced_importance_kl": None,
        "different_trajectories_fraction": float(mask.sum() / len(r_i)) if len(r_i) else None,
        "overdeterminedness": overdeterminedness(firsts),
        "n_rollouts": float(len(r_i)),
        "n_dissimilar": float(len(different)),
    }
    if forced is not None:
        row["forced_importance_accuracy"] = _diff(thoughtlens_accuracy(forced[i + 1]), thoughtlens_accuracy(forced[i]))
        row["forced_importance_kl"] = smoothed_kl(
            thoughtlens_answer_counts(forced[i + 1]), thoughtlens_answer_counts(forced[i]), alpha
        )
    return row


# ---------------------------------------------------------------- the table behind docs/validation.md

DEFINITIONS: tuple[dict[str, str], ...] = (
    {
        "metric": "accuracy",
        "paper": "analyze_rollouts.py:analyze_problem: correct / answered, 0.0 if none answered",
        "thoughtlens": "correct / all rollouts (no answer = wrong)",
    },
    {
        "metric": "resampling_importance_accuracy",
        "paper": (
            "analyze_rollouts.py:calculate_resampling_importance_accuracy: acc[i+1] - acc[i]; 0.0 for the last sentence"
        ),
        "thoughtlens": "same difference with thoughtlens accuracy; last sentence uses R_n (whole reasoning kept)",
    },
    {
        "metric": "resampling_importance_kl",
        "paper": (
            "analyze_rollouts.py:calculate_resampling_importance_kl: KL(D(R_i) || D(R_{i+1})), "
            "answered only, alpha 1e-9"
        ),
        "thoughtlens": "KL(D(R_{i+1}) || D(R_i)), no answer as an outcome, alpha 0.5",
    },
    {
        "metric": "counterfactual_importance_accuracy",
        "paper": "analyze_rollouts.py:calculate_counterfactual_importance_accuracy: acc(dissimilar) - acc(R_{i+1})",
        "thoughtlens": "acc(R_{i+1}) - acc(dissimilar) (opposite sign)",
    },
    {
        "metric": "counterfactual_importance_kl",
        "paper": (
            "analyze_rollouts.py:calculate_counterfactual_importance_kl: KL(D(dissimilar) || D(R_{i+1} + similar))"
        ),
        "thoughtlens": "KL(D(R_{i+1}) || D(dissimilar))",
    },
    {
        "metric": "forced_importance_accuracy / _kl",
        "paper": (
            "analyze_rollouts.py:calculate_forced_importance_accuracy/_kl: facc[i+1] - facc[i]; "
            "KL(D(F_i) || D(F_{i+1}))"
        ),
        "thoughtlens": "facc over all forced rollouts; KL(D(F_{i+1}) || D(F_i))",
    },
    {
        "metric": "different_trajectories_fraction / overdeterminedness",
        "paper": (
            "analyze_rollouts.py:calculate_counterfactual_importance_accuracy: over answered rollouts; "
            "0.0 on the last sentence"
        ),
        "thoughtlens": "over all rollouts; last sentence computed",
    },
    {"metric": "undefined values", "paper": "0.0 (their code's early returns)", "thoughtlens": "None (shown as a gap)"},
)
