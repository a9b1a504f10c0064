"""Statistics with honest uncertainty for nested data (sentences within traces).

- `hierarchical_bootstrap`: CI for the mean of per-trace means, resampling traces, then sentences
  within each drawn trace (two-stage bootstrap), so both sources of variation show in the interval.
- `hierarchical_bootstrap_diff`: the same for the difference of two variables measured on the same traces.
- `permutation_test` / `paired_permutation_test`: p-values for "no difference" (scipy underneath).
- `benjamini_hochberg`: false-discovery-rate adjustment (scipy underneath), NaN-tolerant.
- `cohens_d`, `hedges_g`, `cliffs_delta`: effect sizes.
- `wilson_interval` / `newcombe_interval`: CIs of a proportion and of a difference of two proportions
  (elementwise over arrays), used by the rollout budget, the transplant curve and steering effects.
- `group_resamples`: row indices of a cluster bootstrap that resamples whole groups (problems), used by the
  probes' and directions' held-out CIs.

Data layout: `per_trace` is a list with one 1-D array per trace: `per_trace[t]: [n_sentences_t]`.
An empty array means the trace has no value for this variable; it is not drawn as a contributor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import stats as _sps

from thoughtlens.errors import ThoughtlensError

Alternative = Literal["two-sided", "greater", "less"]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap CI.

    estimate: mean over traces of the per-trace means. se: standard error across traces
    (sample SD of per-trace means / sqrt(n_traces)); NaN when only one trace has values, because
    a spread cannot be estimated from one trace (it is not 0). ci_low/ci_high: percentile bootstrap
    interval at `confidence`, NaN when undefined. n_traces / n: traces / sentences contributing.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    n_traces: int
    n: int
    confidence: float


@dataclass(frozen=True)
class TestResult:
    """A test statistic (difference of means) and its p-value; n_a/n_b: the sample sizes used."""

    statistic: float
    p_value: float
    n_a: int
    n_b: int


def _as_arrays(per_trace: Sequence[Sequence[float] | np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(v, dtype=float).ravel() for v in per_trace]
    for a in arrays:
        if np.isnan(a).any():
            raise ThoughtlensError("per-trace values contain NaN; drop missing values before the bootstrap")
    return arrays


def trace_means(per_trace: Sequence[Sequence[float] | np.ndarray]) -> np.ndarray:
    """Per-trace means of the traces that have values: [n_traces_with_values]."""
    return np.array([a.mean() for a in _as_arrays(per_trace) if a.size])


def mean_se(per_trace: Sequence[Sequence[float] | np.ndarray]) -> tuple[float, float, int]:
    """(mean of per-trace means, SE across traces, n_traces). SE is NaN with one trace, mean NaN with none."""
    m = trace_means(per_trace)
    if m.size == 0:
        return math.nan, math.nan, 0
    se = float(m.std(ddof=1) / math.sqrt(m.size)) if m.size > 1 else math.nan
    return float(m.mean()), se, int(m.size)


def _resampled_trace_means(arrays: list[np.ndarray], n_boot: int, n_copies: int, rng) -> np.ndarray:
    """Within-trace bootstrap means: [n_copies, n_boot, n_traces]. Copy j serves the j-th time a trace
    is drawn in one outer replicate, so repeated traces get independent inner resamples."""
    out = np.full((n_copies, n_boot, len(arrays)), np.nan)
    for t, a in enumerate(arrays):
        for j in range(n_copies if a.size else 0):  # one copy at a time bounds memory to [n_boot, n_t]
            out[j, :, t] = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    return out


def _two_stage_draws(arrays_list: list[list[np.ndarray]], n_boot: int, rng) -> list[np.ndarray]:
    """Bootstrap replicates of the mean of per-trace means for several variables on the same traces.

    Outer stage: draw traces with replacement (shared by all variables, which keeps their pairing).
    Inner stage: redraw each variable's sentences within every drawn trace.
    Returns one [n_boot] array per variable (NaN where no drawn trace had values).
    Hand-written because scipy.stats.bootstrap has no nested (two-stage) resampling.
    """
    n_traces = len(arrays_list[0])
    counts = rng.multinomial(n_traces, np.full(n_traces, 1.0 / n_traces), size=n_boot)  # [n_boot, n_traces]
    n_copies = int(counts.max())
    results = []
    for arrays in arrays_list:
        inner = _resampled_trace_means(arrays, n_boot, n_copies, rng)  # [n_copies, n_boot, n_traces]
        used = np.arange(n_copies)[:, None, None] < counts[None]  # copy j used iff drawn > j times
        has = np.array([a.size > 0 for a in arrays])[None, None, :]
        weight = used & has
        total = np.where(weight, inner, 0.0).sum(axis=(0, 2))
        n_used = weight.sum(axis=(0, 2))
        results.append(np.where(n_used > 0, total / np.maximum(n_used, 1), np.nan))
    return results


def _percentile_ci(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _check_boot_args(n_boot: int, confidence: float) -> None:
    if n_boot < 100:
        raise ThoughtlensError(f"n_boot={n_boot} is too small for a CI; use n_boot >= 1000")
    if not 0.0 < confidence < 1.0:
        raise ThoughtlensError(f"confidence={confidence} must lie in (0, 1), e.g. 0.95")


def hierarchical_bootstrap(
    per_trace: Sequence[Sequence[float] | np.ndarray],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean of per-trace means with a two-stage (traces, then sentences) percentile bootstrap CI.

    per_trace: one 1-D array of values per trace (empty = no values in that trace).
    With one contributing trace the CI comes from the sentence stage alone and SE is NaN.
    """
    _check_boot_args(n_boot, confidence)
    arrays = _as_arrays(per_trace)
    est, se, n_traces = mean_se(arrays)
    n = int(sum(a.size for a in arrays))
    if n_traces == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, 0, confidence)
    (draws,) = _two_stage_draws([arrays], n_boot, np.random.default_rng(seed))
    lo, hi = _percentile_ci(draws, confidence)
    return Estimate(est, se, lo, hi, n_traces, n, confidence)


def hierarchical_bootstrap_diff(
    per_trace_a: Sequence[Sequence[float] | np.ndarray],
    per_trace_b: Sequence[Sequence[float] | np.ndarray],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """(mean of per-trace means of a) - (same of b), with a two-stage bootstrap CI.

    per_trace_a[t] and per_trace_b[t] belong to the same trace t (e.g. two categories of one trace);
    the outer stage draws traces once for both, so shared trace effects cancel as they should.
    se: SD of the bootstrap replicates. n_traces: traces with values for both a and b.
    """
    _check_boot_args(n_boot, confidence)
    a, b = _as_arrays(per_trace_a), _as_arrays(per_trace_b)
    if len(a) != len(b):
        raise ThoughtlensError(
            f"per_trace_a has {len(a)} traces but per_trace_b has {len(b)}; pass one entry per trace to both"
        )
    est = mean_se(a)[0] - mean_se(b)[0]
    both = sum(1 for x, y in zip(a, b) if x.size and y.size)
    n = int(sum(x.size for x in a) + sum(y.size for y in b))
    if math.isnan(est):
        return Estimate(math.nan, math.nan, math.nan, math.nan, both, n, confidence)
    da, db = _two_stage_draws([a, b], n_boot, np.random.default_rng(seed))
    diff = da - db
    lo, hi = _percentile_ci(diff, confidence)
    se = float(np.nanstd(diff, ddof=1))
    return Estimate(float(est), se, lo, hi, both, n, confidence)


def permutation_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_perm: int = 9999,
    alternative: Alternative = "two-sided",
    seed: int = 0,
) -> TestResult:
    """Two-sample permutation test of mean(a) - mean(b) = 0 (units exchangeable under the null)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ThoughtlensError(
            f"permutation test needs >= 2 values per group (got {a.size} and {b.size}); pool more traces"
        )
    res = _sps.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="independent",
        n_resamples=n_perm,
        alternative=alternative,
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    return TestResult(float(res.statistic), float(res.pvalue), int(a.size), int(b.size))


def paired_permutation_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_perm: int = 9999,
    alternative: Alternative = "two-sided",
    seed: int = 0,
) -> TestResult:
    """Sign-flip permutation test of mean(a - b) = 0 for paired values (e.g. two categories' means per trace)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ThoughtlensError(
            f"paired test needs equal lengths (got {a.size} and {b.size}); keep traces with both values"
        )
    if a.size < 2:
        raise ThoughtlensError(f"paired permutation test needs >= 2 pairs (got {a.size}); pool more traces")
    res = _sps.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=n_perm,
        alternative=alternative,
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    return TestResult(float(res.statistic), float(res.pvalue), int(a.size), int(b.size))


def benjamini_hochberg(p_values: Sequence[float], *, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg FDR control. Returns (rejected: [m] bool, adjusted p: [m]).

    NaN p-values (tests that could not run) stay NaN / not rejected and do not count towards m.
    """
    p = np.asarray(p_values, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ThoughtlensError("p-values must lie in [0, 1]; pass raw p-values, not scores")
    adjusted = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        adjusted[ok] = _sps.false_discovery_control(p[ok], method="bh")
    rejected = np.where(ok, np.nan_to_num(adjusted, nan=1.0) <= alpha, False)
    return rejected.astype(bool), adjusted


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """(mean(a) - mean(b)) / pooled SD (ddof=1). NaN when the pooled SD is undefined or zero."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        return math.nan
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    return float((a.mean() - b.mean()) / math.sqrt(pooled)) if pooled > 0 else math.nan


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d times the small-sample correction J = 1 - 3 / (4 (n_a + n_b) - 9)."""
    n = len(a) + len(b)
    return cohens_d(a, b) * (1.0 - 3.0 / (4.0 * n - 9.0))


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """P(a > b) - P(a < b) over all pairs: a rank effect size in [-1, 1], robust to skew."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return math.nan
    diff = a[:, None] - b[None, :]
    return float((np.sign(diff)).mean())


def wilson_interval(k, n, z: float = 1.96):
    """Wilson score interval of k successes in n trials (Newcombe 1998, "Two-sided confidence intervals for the
    single proportion", method 3), elementwise over arrays; (0, 1) where n == 0 (nothing is known).

    Returns (low, high) as floats for scalar input, arrays otherwise."""
    k_arr, n_arr = np.asarray(k, float), np.asarray(n, float)
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ThoughtlensError(f"need 0 <= k <= n for a proportion, got k={k}, n={n}")
    safe = np.maximum(n_arr, 1.0)
    p = k_arr / safe
    denom = 1 + z * z / safe
    centre = (p + z * z / (2 * safe)) / denom
    half = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe)) / denom
    lo = np.where(n_arr > 0, np.clip(centre - half, 0, 1), 0.0)
    hi = np.where(n_arr > 0, np.clip(centre + half, 0, 1), 1.0)
    return (float(lo), float(hi)) if lo.ndim == 0 else (lo, hi)


def newcombe_interval(k1, n1, k0, n0, z: float = 1.96):
    """Interval for k1/n1 - k0/n0 from the two Wilson intervals (Newcombe 1998, "Interval estimation for the
    difference between independent proportions", method 10), elementwise. A proportion with n == 0 counts as
    0 with the uninformative interval [0, 1] (as the paper's accuracy of a position with no answer).
    Treats the trials as independent: for sentences nested in rollouts it is optimistic."""
    k1, n1, k0, n0 = (np.asarray(x, float) for x in (k1, n1, k0, n0))
    p1 = np.where(n1 > 0, k1 / np.maximum(n1, 1), 0.0)
    p0 = np.where(n0 > 0, k0 / np.maximum(n0, 1), 0.0)
    l1, u1 = (np.asarray(x) for x in wilson_interval(k1, n1, z))
    l0, u0 = (np.asarray(x) for x in wilson_interval(k0, n0, z))
    d = p1 - p0
    lo = np.clip(d - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), -1, 1)
    hi = np.clip(d + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2), -1, 1)
    return (float(lo), float(hi)) if lo.ndim == 0 else (lo, hi)


def group_resamples(groups: np.ndarray, n_boot: int, seed: int):
    """Yield `n_boot` row-index arrays, each the rows of len(unique groups) groups drawn with replacement
    (a cluster bootstrap: rows of one group always travel together). groups: [n_rows]."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    rows = {g: np.flatnonzero(groups == g) for g in uniq}
    for _ in range(n_boot):
        yield np.concatenate([rows[g] for g in rng.choice(uniq, len(uniq))])
