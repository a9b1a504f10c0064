"""thoughtlens.stats against known answers: hand-computed values, exact permutation p-values,
the Benjamini-Hochberg paper's example, CI coverage and null p-value uniformity by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from thoughtlens import stats
from thoughtlens.errors import ThoughtlensError
from thoughtlens.stats import newcombe_interval, wilson_interval


def test_mean_se_is_mean_of_trace_means_with_se_across_traces():
    # trace means 2 and 5 -> mean 3.5, SE = sd([2, 5]) / sqrt(2) = 2.1213 / 1.4142 = 1.5; empty trace ignored
    mean, se, n = stats.mean_se([[1.0, 3.0], [5.0], []])
    assert (mean, n) == (3.5, 2)
    assert se == pytest.approx(1.5)


def test_one_trace_gives_undefined_se_not_zero():
    est = stats.hierarchical_bootstrap([[0.1, 0.5, 0.9], []], n_boot=500)
    assert est.estimate == pytest.approx(0.5)
    assert math.isnan(est.se)
    assert est.n_traces == 1 and est.n == 3
    assert est.ci_low < 0.5 < est.ci_high  # the sentence stage still gives an interval


def test_no_values_gives_nan_estimate():
    est = stats.hierarchical_bootstrap([[], []], n_boot=500)
    assert math.isnan(est.estimate) and est.n_traces == 0


def test_bootstrap_is_reproducible_with_a_seed():
    data = [np.arange(5.0), np.arange(3.0) + 2, np.array([7.0, 1.0])]
    a = stats.hierarchical_bootstrap(data, n_boot=500, seed=3)
    b = stats.hierarchical_bootstrap(data, n_boot=500, seed=3)
    assert a == b


def _simulate_nested(rng, n_traces=15, n_sent=8, trace_sd=1.0, sent_sd=1.0, mu=0.0):
    effects = rng.normal(mu, trace_sd, n_traces)
    return [rng.normal(e, sent_sd, rng.integers(max(1, n_sent - 4), n_sent + 5)) for e in effects]


@pytest.mark.slow
def test_hierarchical_bootstrap_ci_covers_true_mean_about_95_percent():
    rng = np.random.default_rng(0)
    n_sims, hits = 300, 0
    for k in range(n_sims):
        est = stats.hierarchical_bootstrap(_simulate_nested(rng, mu=2.0), n_boot=500, seed=k)
        hits += est.ci_low <= 2.0 <= est.ci_high
    coverage = hits / n_sims
    # Binomial SE at 95 % over 300 sims is 1.3 %; the percentile interval with 15 clusters runs a little
    # narrow or wide depending on the variance split, so accept 89-99 %.
    assert 0.89 <= coverage <= 0.99, coverage


def test_diff_shares_trace_draws_so_constant_shift_has_zero_width_ci():
    # b = a - 1 in every trace with no within-trace spread: any shared resample gives exactly 1
    a = [np.full(3, v) for v in (0.0, 4.0, 9.0, 2.0)]
    b = [x - 1.0 for x in a]
    d = stats.hierarchical_bootstrap_diff(a, b, n_boot=500)
    assert d.estimate == pytest.approx(1.0)
    assert d.ci_low == pytest.approx(1.0) and d.ci_high == pytest.approx(1.0)
    assert d.n_traces == 4


def test_diff_of_identical_variables_is_centred_on_zero():
    rng = np.random.default_rng(1)
    a = _simulate_nested(rng)
    d = stats.hierarchical_bootstrap_diff(a, a, n_boot=1000)
    assert d.estimate == 0.0 and d.ci_low < 0.0 < d.ci_high


def test_permutation_test_matches_exact_enumeration():
    # 20 ways to split {1..6} into 3 + 3; |mean difference| >= 3 only for the two extreme splits: p = 2/20
    res = stats.permutation_test([1, 2, 3], [4, 5, 6], n_perm=9999)
    assert res.statistic == pytest.approx(-3.0)
    assert res.p_value == pytest.approx(0.1)


def test_paired_permutation_test_matches_exact_sign_flips():
    # differences 1, 2, 3, 4: of the 16 sign patterns only all-plus and all-minus reach |mean| 2.5: p = 2/16
    res = stats.paired_permutation_test([2, 4, 6, 8], [1, 2, 3, 4], n_perm=9999)
    assert res.statistic == pytest.approx(2.5)
    assert res.p_value == pytest.approx(0.125)


@pytest.mark.slow
def test_permutation_p_values_are_uniform_without_effect():
    rng = np.random.default_rng(2)
    p = np.array(
        [
            stats.permutation_test(rng.normal(size=12), rng.normal(size=9), n_perm=499, seed=k).p_value
            for k in range(300)
        ]
    )
    assert sps.kstest(p, "uniform").pvalue > 0.01
    assert 0.02 <= (p < 0.05).mean() <= 0.09
    paired = np.array(
        [
            stats.paired_permutation_test(rng.normal(size=10), rng.normal(size=10), n_perm=499, seed=k).p_value
            for k in range(200)
        ]
    )
    assert sps.kstest(paired, "uniform").pvalue > 0.01


def test_permutation_test_finds_a_real_effect():
    rng = np.random.default_rng(3)
    assert stats.permutation_test(rng.normal(1.5, 1, 20), rng.normal(0, 1, 20), n_perm=1999).p_value < 0.01


def test_benjamini_hochberg_textbook_example():
    # Benjamini & Hochberg (1995), section 4: 15 p-values, q = 0.05 rejects the four smallest
    p = [
        0.0001,
        0.0004,
        0.0019,
        0.0095,
        0.0201,
        0.0278,
        0.0298,
        0.0344,
        0.0459,
        0.3240,
        0.4262,
        0.5719,
        0.6528,
        0.7590,
        1.0,
    ]
    rejected, adjusted = stats.benjamini_hochberg(p, alpha=0.05)
    assert rejected.tolist() == [True] * 4 + [False] * 11
    # by hand: adj_(i) = min_{j >= i} 15 p_(j) / j
    assert adjusted[3] == pytest.approx(15 * 0.0095 / 4)  # 0.035625
    assert adjusted[4] == pytest.approx(15 * 0.0201 / 5)  # 0.0603, smaller than all later ratios
    assert adjusted[-1] == pytest.approx(1.0)


def test_benjamini_hochberg_skips_nan_p_values():
    rejected, adjusted = stats.benjamini_hochberg([0.01, math.nan, 0.04], alpha=0.05)
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04)  # m = 2, not 3
    assert math.isnan(adjusted[1]) and rejected.tolist() == [True, False, True]


def test_effect_sizes_by_hand():
    a, b = [1.0, 2.0, 3.0], [3.0, 4.0, 5.0]  # means 2 and 4, both variances 1
    assert stats.cohens_d(a, b) == pytest.approx(-2.0)
    assert stats.hedges_g(a, b) == pytest.approx(-2.0 * (1 - 3 / (4 * 6 - 9)))
    assert stats.cliffs_delta(a, b) == pytest.approx(-8 / 9)  # 8 of 9 pairs lower, one tie
    assert math.isnan(stats.cohens_d([1.0], b))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: stats.hierarchical_bootstrap([[1.0]], n_boot=10), "n_boot"),
        (lambda: stats.hierarchical_bootstrap([[1.0]], confidence=95), "confidence"),
        (lambda: stats.hierarchical_bootstrap([[1.0, math.nan]]), "NaN"),
        (lambda: stats.hierarchical_bootstrap_diff([[1.0]], [[1.0], [2.0]]), "one entry per trace"),
        (lambda: stats.benjamini_hochberg([0.5, 1.5]), r"\[0, 1\]"),
        (lambda: stats.permutation_test([1.0], [2.0, 3.0]), ">= 2 values"),
        (lambda: stats.paired_permutation_test([1.0, 2.0], [1.0]), "equal lengths"),
    ],
)
def test_bad_input_raises_one_line_error(call, match):
    with pytest.raises(ThoughtlensError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_wilson_and_newcombe_reproduce_the_published_examples():
    # Newcombe 1998 (Stat Med 17:857 and 17:873): 81/263 -> 0.2553, 0.3662; 56/70 - 48/80 -> 0.0524, 0.3339
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # nothing known: the whole range
    with pytest.raises(ThoughtlensError, match="0 <= k <= n"):
        wilson_interval(3, 2)
    # Elementwise over arrays, equal to the scalar calls.
    lo, hi = newcombe_interval(np.array([56, 5]), np.array([70, 9]), np.array([48, 0]), np.array([80, 0]))
    assert (lo[0], hi[0]) == pytest.approx(newcombe_interval(56, 70, 48, 80))
    assert (lo[1], hi[1]) == pytest.approx(newcombe_interval(5, 9, 0, 0))


def test_group_resamples_draws_whole_groups_with_replacement():
    from thoughtlens.stats import group_resamples

    groups = np.array(["a", "a", "b", "c", "c", "c"])
    sizes = {"a": 2, "b": 1, "c": 3}
    draws = list(group_resamples(groups, 200, seed=0))
    assert len(draws) == 200
    seen = set()
    for rows in draws:
        drawn = groups[rows]
        # every drawn group comes with all its rows: the count of each label is a multiple of its size
        assert all(np.sum(drawn == g) % sizes[g] == 0 for g in sizes)
        assert sum(np.sum(drawn == g) // sizes[g] for g in sizes) == 3  # 3 groups drawn
        seen.add(tuple(sorted(rows)))
    assert len(seen) > 5  # with replacement: many different resamples, not one permutation
    again = list(group_resamples(groups, 200, seed=0))
    assert all(np.array_equal(x, y) for x, y in zip(draws, again))  # seeded
