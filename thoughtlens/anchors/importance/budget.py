"""Adaptive rollout budgets: how many more rollouts each prefix position gets, round by round.

The paper spends a fixed 100 rollouts on every prefix position (generate_rollouts.py, --num_rollouts).
Most sentences are settled long before that: a position whose rollouts are all correct, or a sentence
whose importance is clearly far below the trace's top anchors, gains nothing from 90 more samples.
A `BudgetPolicy` samples in rounds and, after each round, asks `next_round` which positions need more:

  fixed       every position gets the run's n_rollouts at once (today's behaviour, the paper's);
  sequential  every position starts with `initial` rollouts; a sentence is *settled* once the
              confidence interval (CI) of its resampling importance (accuracy) is narrow
              (half-width <= ci_half_width), clearly negligible (CI inside +-negligible), or clearly
              outside the top_k (upper bound of |importance| below the top_k-th largest lower bound,
              a successive-elimination rule). Positions next to an unsettled sentence get `step` more;
  hybrid      sequential, and also refines where neighbouring estimates change sharply: both positions
              of a sentence whose |importance| estimate is >= `jump` get `step` more until they reach
              the cap, so that the sharp changes the page ranks first are measured at the full budget.

Named option `total_fraction` (sequential or hybrid; thoughtlens's, not the paper's nor frugal-thought-anchors'):
a cap on a problem's rollouts, as a share of (positions x cap). Each round then goes to the open positions
whose sentences have the *widest* importance CIs first (step each), until the cap is spent: for a user with
a fixed compute budget, who wants it where the estimates are least certain rather than in position order.

The metric steered on is the paper's resampling importance (accuracy): imp_i = acc(R_{i+1}) - acc(R_i),
with acc = correct / answered (analyze_rollouts.py:analyze_problem; see anchors.importance.definitions). Its CI is
Newcombe's hybrid score interval for a difference of two proportions (Newcombe 1998, method 10): it
is built from the two Wilson intervals, stays inside [-1, 1], and does not collapse to a point at 0/n or
n/n the way the Wald interval does (a position with 8/8 correct is not "known exactly").

`next_round` is a pure function of the rollouts stored so far, so a killed run that resumes asks
for exactly the same extra rollouts (the job also stores each round's targets, see black_box.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from thoughtlens.errors import ConfigError
from thoughtlens.stats import (  # re-exported: part of this module's API
    newcombe_interval,
    wilson_interval,
)

BUDGET_KINDS = ("fixed", "sequential", "hybrid")


@dataclass(frozen=True)
class PositionStats:
    """Rollouts stored at one prefix position: how many, how many gave an answer, how many were correct."""

    n: int
    n_answered: int
    n_correct: int


@dataclass(frozen=True)
class BudgetPolicy:
    """How rollouts are spread over prefix positions. Stored with the run (runs.config["budget"]).

    kind: "fixed" | "sequential" | "hybrid" (module docstring). max_rollouts: per-position cap; None =
    the run's n_rollouts. initial: rollouts per position in the first round; step: extra rollouts per
    position and round. confidence: two-sided level of the CIs. ci_half_width / negligible / top_k /
    jump: the stopping and refining rules (module docstring); top_k=0 disables the elimination rule.
    total_fraction: None, or a cap on all rollouts of a problem as a share of positions x cap (module
    docstring); with it, the widest CIs are served first.
    """

    kind: str = "sequential"
    initial: int = 10
    step: int = 10
    max_rollouts: int | None = None
    confidence: float = 0.95
    ci_half_width: float = 0.05
    negligible: float = 0.05
    top_k: int = 5
    jump: float = 0.2
    total_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_KINDS:
            raise ConfigError(f"unknown budget {self.kind!r}; use one of {', '.join(BUDGET_KINDS)} (--budget)")
        for name in ("initial", "step"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"budget {name} must be an integer >= 1, got {v!r}: e.g. {name}=10")
        if self.max_rollouts is not None and (not isinstance(self.max_rollouts, int) or self.max_rollouts < 1):
            raise ConfigError(
                f"budget max_rollouts must be an integer >= 1 or None, got {self.max_rollouts!r}: "
                "e.g. max_rollouts=100 (None = the run's --rollouts)"
            )
        if not 0 < self.confidence < 1:
            raise ConfigError(f"budget confidence must lie in (0, 1), got {self.confidence!r}: e.g. 0.95")
        for name in ("ci_half_width", "negligible", "jump"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"budget {name} must be a number >= 0, got {v!r}: e.g. {name}=0.05")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"budget top_k must be an integer >= 0, got {self.top_k!r}: e.g. top_k=5 (0 = off)")
        if self.total_fraction is not None:
            if (
                isinstance(self.total_fraction, bool)
                or not isinstance(self.total_fraction, (int, float))
                or not 0 < self.total_fraction <= 1
            ):
                raise ConfigError(
                    f"budget total_fraction must lie in (0, 1], got {self.total_fraction!r}: "
                    "e.g. total_fraction=0.25 (--budget-total)"
                )
            if self.kind == "fixed":
                raise ConfigError(
                    "budget total_fraction needs --budget sequential or hybrid (fixed spends the cap everywhere)"
                )

    def record(self) -> dict:
        """The policy as stored in the run's config (and hashed into its run id). Options added later are
        left out while unset, so that runs stored before they existed keep their ids and resume."""
        d = asdict(self)
        if d["total_fraction"] is None:
            del d["total_fraction"]
        return d

    @property
    def z(self) -> float:
        """Two-sided normal quantile of `confidence` (1.96 for 0.95)."""
        return float(_norm_ppf(0.5 + self.confidence / 2))


def _norm_ppf(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)


def importance_ci(stats: Sequence[PositionStats], z: float = 1.96) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resampling importance (accuracy) per sentence and its Newcombe CI: (estimate, low, high), each [S].

    stats: one PositionStats per prefix position 0..S. Accuracy is correct / answered (the paper's);
    a position with no answered rollout has accuracy 0.0 (paper) and the uninformative CI [0, 1].
    """
    if len(stats) < 2:
        raise ValueError(f"need stats for >= 2 prefix positions (S + 1), got {len(stats)}")
    k = np.array([s.n_correct for s in stats], float)
    n = np.array([s.n_answered for s in stats], float)
    p = np.where(n > 0, k / np.maximum(n, 1), 0.0)
    low, high = newcombe_interval(k[1:], n[1:], k[:-1], n[:-1], z)
    return p[1:] - p[:-1], low, high


def settled(policy: BudgetPolicy, stats: Sequence[PositionStats]) -> np.ndarray:
    """[S] bool: sentences whose importance needs no more rollouts under `policy`'s stopping rules."""
    est, low, high = importance_ci(stats, policy.z)
    done = (high - low) / 2 <= policy.ci_half_width
    done |= (low > -policy.negligible) & (high < policy.negligible)
    if policy.top_k and len(est) > policy.top_k:
        abs_low = np.where(low > 0, low, np.where(high < 0, -high, 0.0))
        abs_high = np.maximum(np.abs(low), np.abs(high))
        kth = np.sort(abs_low)[-policy.top_k]
        done |= abs_high < kth
    return done


def next_round(policy: BudgetPolicy, stats: Sequence[PositionStats], cap: int) -> dict[int, int]:
    """Extra rollouts per prefix position for the next round ({} = the run is complete).

    stats: what is stored at positions 0..S (S + 1 entries); cap: per-position maximum (the run's
    n_rollouts unless policy.max_rollouts says otherwise). Positions never exceed the cap.
    """
    cap = policy.max_rollouts or cap
    have = np.array([s.n for s in stats])
    if policy.kind == "fixed":
        extra = cap - have
    elif (have == 0).any():  # first round (or a position added later): everyone gets `initial`
        extra = np.where(have < min(policy.initial, cap), min(policy.initial, cap) - have, 0)
    else:
        open_ = ~settled(policy, stats)
        if policy.kind == "hybrid":
            est, _, _ = importance_ci(stats, policy.z)
            open_ |= np.abs(est) >= policy.jump
        want = np.zeros(len(stats), bool)
        want[:-1] |= open_  # sentence i is measured by positions i and i + 1
        want[1:] |= open_
        extra = np.where(want, np.minimum(policy.step, cap - have), 0)
    if policy.total_fraction is not None:
        extra = _within_total(policy, stats, extra, int(policy.total_fraction * len(stats) * cap) - int(have.sum()))
    return {int(k): int(e) for k, e in enumerate(extra) if e > 0}


def _within_total(policy: BudgetPolicy, stats: Sequence[PositionStats], extra: np.ndarray, left: int) -> np.ndarray:
    """Cut a round to the `left` rollouts of the total cap, widest importance CIs first (position order on ties)."""
    if extra.sum() <= left:
        return extra
    out = np.zeros_like(extra)
    if left <= 0:
        return out
    if all(s.n > 0 for s in stats):
        width = ci_half_widths(stats, policy.confidence)  # [S]
        priority = np.maximum(np.r_[width, 0.0], np.r_[0.0, width])  # a position serves sentences k - 1 and k
    else:  # first round: nothing measured yet, so position order
        priority = np.zeros(len(stats))
    for k in np.argsort(-priority, kind="stable"):
        out[k] = min(extra[k], left)
        left -= out[k]
        if left == 0:
            break
    return out


def simulate(
    policy: BudgetPolicy, draws: np.ndarray, answered: np.ndarray | None = None, max_rounds: int = 1000
) -> np.ndarray:
    """Replay `policy` on pre-drawn rollouts: draws [positions, cap] bool (correct?), taken in column order.

    Returns the number of rollouts used per position, [positions]. `answered` [positions, cap] marks
    rollouts that gave an answer (default: all). Used by the benchmark and by `replay.py`.
    """
    n_pos, cap = draws.shape
    answered = np.ones_like(draws, bool) if answered is None else answered
    used = np.zeros(n_pos, int)
    for _ in range(max_rounds):
        stats = [
            PositionStats(int(u), int(answered[k, :u].sum()), int((draws[k, :u] & answered[k, :u]).sum()))
            for k, u in enumerate(used)
        ]
        extra = next_round(policy, stats, cap)
        if not extra:
            return used
        for k, e in extra.items():
            used[k] += e
    raise RuntimeError(f"budget policy did not finish within {max_rounds} rounds")


def ci_half_widths(stats: Sequence[PositionStats], confidence: float = 0.95) -> np.ndarray:
    """[S] half-width of each sentence's importance CI (for the page / reports)."""
    _, low, high = importance_ci(stats, float(_norm_ppf(0.5 + confidence / 2)))
    return (high - low) / 2


__all__ = [
    "BUDGET_KINDS",
    "BudgetPolicy",
    "PositionStats",
    "wilson_interval",
    "importance_ci",
    "settled",
    "next_round",
    "simulate",
    "ci_half_widths",
]
