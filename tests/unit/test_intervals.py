"""Medians, bootstrap intervals and the steady-state window, on data whose answer is known.

Where a bootstrap's answer is not obvious, the comment derives it: the bootstrap median
of n values is an order statistic, and P(median* <= x_(j)) = P(Binomial(n, j/n) >= (n+1)/2)
for odd n, so the interval's ends can be worked out with math.comb.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from pytest_vllm_serve.bench.metrics import (
    Interval,
    coefficient_of_variation,
    difference,
    difference_over_requests,
    over_repeats,
    over_requests,
    request_end,
    steady_state,
    window_duration,
)
from pytest_vllm_serve.bench.metrics.intervals import _pooled_percentiles
from pytest_vllm_serve.bench.records import RequestRecord

TIGHT = [100.0, 101.0, 99.0, 100.5, 99.5]  # median 100, within 1 %


def binomial_tail(n: int, p: float, k: int) -> float:
    """P(Binomial(n, p) >= k)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


# --------------------------------------------------------------------------- over_repeats


def test_identical_values_give_a_zero_width_interval_at_the_value():
    iv = over_repeats([7.25] * 6)
    assert iv == Interval(n=6, median=7.25, ci_low=7.25, ci_high=7.25, cv=0.0)
    assert iv.width == 0


def test_a_single_run_has_no_interval():
    assert over_repeats([42.0]) == Interval(1, 42.0, 42.0, 42.0, 0.0)


def test_five_repeats_give_their_range():
    # P(median* = min) = P(Bin(5, 1/5) >= 3) = 0.058 > 0.025, so the 2.5 % end is the
    # smallest value; by symmetry the 97.5 % end is the largest.
    assert binomial_tail(5, 1 / 5, 3) == pytest.approx(0.05792)
    iv = over_repeats([3.0, 1.0, 5.0, 2.0, 4.0])
    assert (iv.median, iv.ci_low, iv.ci_high) == (3.0, 1.0, 5.0)


def test_interval_of_many_repeats_is_inside_the_range_where_the_binomial_says():
    values = [float(v) for v in range(1, 22)]  # 21 values: median 11
    # the 2.5 % end is x_(j) for the smallest j with P(median* <= x_(j)) >= 0.025
    j = next(j for j in range(1, 22) if binomial_tail(21, j / 21, 11) >= 0.025)
    assert j == 7  # 0.0135 at j=6, 0.0399 at j=7
    iv = over_repeats(values)
    assert iv.median == 11.0
    assert iv.ci_low in (j - 1, j, j + 1)  # 2000 resamples: within one order statistic
    assert iv.ci_high in (22 - j - 1, 22 - j, 22 - j + 1)  # the mirror image
    assert iv.ci_low <= iv.median <= iv.ci_high


def test_wider_spread_gives_a_wider_interval():
    narrow = over_repeats([10.0, 10.1, 9.9, 10.05, 9.95, 10.02, 9.98])
    wide = over_repeats([10.0, 15.0, 5.0, 12.5, 7.5, 11.0, 9.0])
    assert narrow.median == wide.median == 10.0
    assert 0 < narrow.width < wide.width


def test_the_bootstrap_is_seeded():
    values = [float(v) for v in np.random.default_rng(7).normal(100, 10, 40)]
    assert over_repeats(values, seed=3) == over_repeats(values, seed=3)
    bounds = {(iv.ci_low, iv.ci_high) for iv in (over_repeats(values, seed=s) for s in range(6))}
    assert len(bounds) > 1  # the seed does choose the resamples


def test_a_lower_confidence_gives_a_narrower_interval():
    values = [float(v) for v in np.random.default_rng(8).normal(100, 10, 15)]
    assert over_repeats(values, confidence=0.5).width < over_repeats(values, confidence=0.99).width


def test_cv_by_hand():
    # mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32; sample variance 32/7
    assert coefficient_of_variation([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(math.sqrt(32 / 7) / 5 * 100)
    assert over_repeats([2, 4, 4, 4, 5, 5, 7, 9]).cv == pytest.approx(42.7618, abs=1e-4)
    assert coefficient_of_variation([3.0]) == 0.0
    assert coefficient_of_variation([0.0, 0.0]) == 0.0  # no variation, even at a zero mean
    assert coefficient_of_variation([-1.0, 1.0]) is None  # zero mean, values differ
    assert coefficient_of_variation([-2.0, -4.0]) == pytest.approx(math.sqrt(2) / 3 * 100)  # |mean|


def test_as_dict_is_json_ready():
    d = over_repeats([1.0, 2.0, 3.0]).as_dict()
    assert set(d) == {"median", "ci_low", "ci_high", "cv"}
    assert all(isinstance(v, float) for v in d.values())
    assert json.loads(json.dumps(d)) == d
    assert json.dumps(Interval(2, 0.0, -1.0, 1.0, None).as_dict()) == (
        '{"median": 0.0, "ci_low": -1.0, "ci_high": 1.0, "cv": null}'
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: over_repeats([]), "non-empty"),
        (lambda: over_repeats([1.0, math.nan]), "finite"),
        (lambda: over_repeats([1.0, math.inf]), "finite"),
        (lambda: over_repeats([1.0], confidence=1.0), "confidence"),
        (lambda: over_repeats([1.0], confidence=0.0), "confidence"),
        (lambda: over_repeats([1.0], resamples=0), "resamples"),
        (lambda: over_requests([], 99), "at least one repeat"),
        (lambda: over_requests([[1.0], []], 99), "repeat 1"),
        (lambda: over_requests([[1.0]], 101), "0..100"),
        (lambda: difference([0.0, 0.0], [1.0], relative=True), "baseline median of 0"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- over_requests


def test_one_repeat_gives_the_percentile_of_its_requests():
    samples = [float(v) for v in range(1, 11)]
    iv = over_requests([samples], 90)
    # numpy's linear interpolation: position (10 - 1) * 0.9 = 8.1 -> 9 + 0.1 * (10 - 9)
    assert iv.median == pytest.approx(9.1)
    assert iv.median == float(np.percentile(samples, 90))
    assert iv.n == 1 and iv.cv == 0.0
    assert 1.0 <= iv.ci_low <= iv.median <= iv.ci_high <= 10.0
    assert iv.width > 0  # a bootstrap over the requests of the one run


def test_several_repeats_pool_their_requests():
    iv = over_requests([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]], 50)
    assert iv.median == 4.0  # the median of 1..7
    # cv over the per-repeat medians 2 and 5.5: mean 3.75, sample std 3.5 / sqrt(2)
    assert iv.cv == pytest.approx(3.5 / math.sqrt(2) / 3.75 * 100)
    assert iv.n == 2 and iv.ci_low <= 4.0 <= iv.ci_high


def test_identical_requests_give_a_zero_width_interval():
    iv = over_requests([[0.25] * 40, [0.25] * 30, [0.25] * 50], 99)
    assert (iv.median, iv.ci_low, iv.ci_high, iv.cv) == (0.25, 0.25, 0.25, 0.0)


def test_a_noisier_tail_gives_a_wider_interval():
    rng = np.random.default_rng(5)
    calm = [list(rng.normal(1.0, 0.01, 500)) for _ in range(5)]
    jumpy = [list(rng.lognormal(0.0, 0.8, 500)) for _ in range(5)]
    assert over_requests(calm, 99).width < over_requests(jumpy, 99).width


def test_the_two_level_bootstrap_is_seeded():
    groups = [[1.0, 5.0, 2.0, 8.0], [3.0, 9.0, 4.0]]
    assert over_requests(groups, 90, seed=4) == over_requests(groups, 90, seed=4)


def test_one_repeat_draws_each_order_statistic_with_its_binomial_probability():
    # Resampling 5 distinct values, the median* is x_(j) with probability
    # P(Bin(5, j/5) >= 3) - P(Bin(5, (j-1)/5) >= 3).
    values = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    medians = _pooled_percentiles([values], 50, 40000, np.random.default_rng(0))
    for j in range(1, 6):
        exact = binomial_tail(5, j / 5, 3) - binomial_tail(5, (j - 1) / 5, 3)
        assert np.mean(medians == values[j - 1]) == pytest.approx(exact, abs=0.01)


def test_the_two_neighbours_of_a_percentile_come_from_one_resample():
    # The median of a resample of [0, 1] is 0 ({0, 0}: 1/4), 0.5 ({0, 1} or {1, 0}: 1/2)
    # or 1 ({1, 1}: 1/4). Drawing its two order statistics apart would give 0.5 in 10/16.
    medians = _pooled_percentiles([np.array([0.0, 1.0])], 50, 40000, np.random.default_rng(0))
    assert set(np.unique(medians)) == {0.0, 0.5, 1.0}
    assert np.mean(medians == 0.5) == pytest.approx(0.5, abs=0.01)
    assert np.mean(medians == 0.0) == pytest.approx(0.25, abs=0.01)


def naive_two_level(groups, q, resamples, rng):
    """The two-level bootstrap written out: draw repeats, then each drawn repeat's requests
    (NaN pads the unused places; np.sort puts it last), then np.percentile of the pool."""
    sizes = np.array([g.size for g in groups])
    padded = np.full((len(groups), sizes.max()), np.nan)
    for r, g in enumerate(groups):
        padded[r, : g.size] = g
    drawn = rng.integers(0, len(groups), (resamples, len(groups)))
    picks = np.floor(rng.random((resamples, len(groups), sizes.max())) * sizes[drawn][:, :, None]).astype(int)
    pools = padded[drawn[:, :, None], picks]
    pools[np.arange(sizes.max()) >= sizes[drawn][:, :, None]] = np.nan
    pools = np.sort(pools.reshape(resamples, -1), axis=1)
    totals = sizes[drawn].sum(axis=1)
    out = np.empty(resamples)
    for m in np.unique(totals):
        rows = totals == m
        out[rows] = np.percentile(pools[rows, :m], q, axis=1)
    return out


@pytest.mark.parametrize("q", [0.0, 37.0, 50.0, 90.0, 99.0, 100.0])
def test_the_sampler_matches_the_naive_two_level_bootstrap(q):
    groups = [np.array([1.0, 2.0, 3.0, 7.0]), np.array([10.0, 20.0, 5.0]), np.array([4.0, 4.5])]
    fast = _pooled_percentiles(groups, q, 20000, np.random.default_rng(0))
    slow = naive_two_level(groups, q, 20000, np.random.default_rng(1))
    assert fast.mean() == pytest.approx(slow.mean(), rel=0.02)
    for p in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert np.quantile(fast, p) == pytest.approx(np.quantile(slow, p), rel=0.05)


def test_over_requests_is_fast_enough_for_five_repeats_of_a_thousand_requests():
    rng = np.random.default_rng(1)
    groups = [list(rng.lognormal(0, 0.5, 1000)) for _ in range(5)]
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        over_requests(groups, 99)
        best = min(best, time.perf_counter() - start)
    assert best < 0.25  # about 20 ms on one core; a loop over resamples takes seconds


# --------------------------------------------------------------------------- difference


def test_a_clear_shift_of_20_percent_excludes_zero_and_contains_the_shift():
    new = [v * 1.2 for v in TIGHT]
    d = difference(TIGHT, new, relative=True)
    assert d.change == pytest.approx(20.0)
    assert 0 < d.ci_low <= 20.0 <= d.ci_high
    assert (d.n_old, d.n_new, d.relative) == (5, 5, True)
    a = difference(TIGHT, new, relative=False)
    assert a.change == pytest.approx(20.0) and 0 < a.ci_low <= 20.0 <= a.ci_high  # median 100 -> 120


def test_the_two_sides_are_resampled_independently():
    d = difference(TIGHT, TIGHT, relative=False)
    assert d.change == 0 and d.ci_low < 0 < d.ci_high  # the same resamples on both would give [0, 0]


def test_a_single_run_side_is_taken_as_exact():
    noisy = [90.0, 95.0, 100.0, 105.0, 110.0, 97.0, 103.0]
    d = difference([100.0], noisy, relative=False)
    iv = over_repeats(noisy)  # the same stream: only this side draws
    assert (d.ci_low, d.ci_high) == (iv.ci_low - 100.0, iv.ci_high - 100.0)
    both = difference([100.0], [88.0], relative=True)
    assert (both.change, both.ci_low, both.ci_high) == (-12.0, -12.0, -12.0)


def test_a_baseline_resample_with_a_zero_median_is_an_infinite_change():
    # the baseline's median is 5, but P(median* = 0) = P(Bin(5, 2/5) >= 3) = 0.32
    d = difference([0.0, 0.0, 5.0, 5.0, 5.0], [5.0, 5.0, 6.0, 6.0, 6.0], relative=True)
    assert d.change == 20.0 and d.ci_high == math.inf and math.isfinite(d.ci_low)


# --------------------------------------------------------------------------- steady state


def rec(index: int, send: float, end: float | None, warmup: bool = False) -> RequestRecord:
    return RequestRecord(index=index, scheduled_time=send, dispatch_time=send, send_time=send, end_time=end,
                         chunk_times=[send + 0.5], warmup=warmup)  # fmt: skip


def test_steady_state_drops_the_ramp_up_and_the_drain():
    records = [
        rec(0, 0.0, 3.0),
        rec(1, 0.1, 2.0),  # ramp-up: the first two sent
        rec(2, 1.0, 4.0),
        rec(3, 2.0, 9.0),  # drain: the last two ended
        rec(4, 3.0, 5.0),
        rec(5, 4.0, 6.0),
        rec(6, 5.0, 8.5),  # drain
        rec(7, -1.0, 0.0, warmup=True),  # never counted
    ]
    kept = steady_state(records, concurrency=2)
    assert [r.index for r in kept] == [2, 4, 5]
    assert window_duration(kept) == 5.0  # sent at 1.0, last end 6.0
    assert [r.index for r in steady_state(records, 0)] == [0, 1, 2, 3, 4, 5, 6]


def test_steady_state_keeps_workload_order_and_drops_a_request_in_both_ends_once():
    records = [rec(2, 0.0, 10.0), rec(0, 1.0, 2.0), rec(1, 2.0, 3.0)]  # index 2: first sent and last ended
    assert [r.index for r in steady_state(records, 1)] == [0, 1]


def test_too_few_requests_have_no_steady_state():
    records = [rec(i, float(i), i + 1.0) for i in range(4)]
    assert steady_state(records, 2) == []  # 4 < 2 * 2 + 1
    assert [r.index for r in steady_state(records + [rec(4, 4.0, 5.0)], 2)] == [2]
    with pytest.raises(ValueError, match="steady state is empty"):
        window_duration([])
    with pytest.raises(ValueError, match="at least 0"):
        steady_state(records, -1)


def test_a_request_without_an_end_time_ends_at_its_last_chunk():
    assert request_end(rec(0, 1.0, None)) == 1.5
    assert request_end(RequestRecord(index=0, scheduled_time=0.0, send_time=2.0)) == 2.0
    assert request_end(rec(0, 1.0, 7.0)) == 7.0


# -- difference_over_requests ------------------------------------------------------------------
def _repeats_of(rng: np.random.Generator, scale: float, n: int = 5, size: int = 240) -> list[list[float]]:
    return [list(rng.lognormal(np.log(10 * scale), 0.5, size)) for _ in range(n)]


def test_over_requests_a_shift_of_10_percent_over_enough_requests_excludes_zero():
    rng = np.random.default_rng(7)
    old, new = _repeats_of(rng, 1.0, size=720), _repeats_of(rng, 1.1, size=720)
    d = difference_over_requests(old, new, 50, relative=True)
    assert d.over == "requests" and (d.n_old, d.n_new) == (5, 5)
    assert 0 < d.ci_low <= 10 <= d.ci_high
    pooled = np.percentile(np.concatenate(new), 50) / np.percentile(np.concatenate(old), 50)
    assert d.change == pytest.approx((pooled - 1) * 100)  # the pooled percentiles, not a median of medians
    assert difference([1.0, 2.0], [2.0, 3.0], relative=True).over == "repeats"


def test_over_requests_the_same_distribution_holds_zero():
    rng = np.random.default_rng(11)
    d = difference_over_requests(_repeats_of(rng, 1.0), _repeats_of(rng, 1.0), 99, relative=True)
    assert d.ci_low <= 0 <= d.ci_high


def test_over_requests_a_drift_between_repeats_widens_the_interval():
    rng = np.random.default_rng(3)
    steady = _repeats_of(rng, 1.0)
    drifting = [[v * f for v in r] for r, f in zip(_repeats_of(rng, 1.0), (0.7, 0.85, 1.0, 1.15, 1.3))]
    base = _repeats_of(rng, 1.0)
    assert (
        difference_over_requests(base, drifting, 50, True).width
        > 2 * difference_over_requests(base, steady, 50, True).width
    )


def test_over_requests_absolute_and_seeded():
    rng = np.random.default_rng(5)
    old, new = _repeats_of(rng, 1.0), _repeats_of(rng, 1.2)
    a = difference_over_requests(old, new, 90, relative=False, seed=4)
    assert a == difference_over_requests(old, new, 90, relative=False, seed=4)
    assert a.change == pytest.approx(np.percentile(np.concatenate(new), 90) - np.percentile(np.concatenate(old), 90))


@pytest.mark.parametrize(
    ("old", "new", "q", "message"),
    [
        ([], [[1.0]], 50, "at least one repeat"),
        ([[1.0]], [[1.0, float("nan")]], 50, "finite"),
        ([[1.0]], [[1.0]], 101, "0..100"),
        ([[0.0, 0.0]], [[1.0]], 50, "baseline percentile of 0"),
    ],
)
def test_over_requests_bad_input_is_refused(old, new, q, message):
    with pytest.raises(ValueError, match=message):
        difference_over_requests(old, new, q, relative=True)
