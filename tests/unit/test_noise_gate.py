"""The regression gate over repeats: fail, pass or undecided, and agreement with the single-run gate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vllm_serve.bench.gates import Threshold, check_thresholds, parse_fail_on
from pytest_vllm_serve.bench.metrics import (
    Difference,
    difference,
    difference_over_requests,
    over_repeats,
    over_requests,
)
from pytest_vllm_serve.bench.noise_gate import check_decisions, decide, repeats_needed, request_samples
from pytest_vllm_serve.errors import ConfigError

TIGHT = [100.0, 101.0, 99.0, 100.5, 99.5]  # median 100, 95 % CI of the median [99, 101]
NOISY = [100.0, 120.0, 80.0, 110.0, 90.0]  # median 100, 95 % CI [80, 120]
THROUGHPUT, TTFT, TOKENS = parse_fail_on("output_throughput:-5%,p99_ttft_ms:+10%,total_output_tokens:1%")


def scaled(values, factor):
    return [v * factor for v in values]


# --------------------------------------------------------------------------- the three verdicts


def test_a_tight_fall_of_12_percent_fails():
    d = decide(THROUGHPUT, TIGHT, scaled(TIGHT, 0.88), 0.95)
    assert d.verdict == "fail" and d.repeats_needed is None
    assert d.difference.change == pytest.approx(-12.0)
    assert d.difference.ci_high < 0  # the interval excludes zero
    assert (d.baseline.median, d.baseline.ci_low, d.baseline.ci_high) == (100.0, 99.0, 101.0)
    assert (d.current.median, d.current.ci_low, d.current.ci_high) == (88.0, 87.12, 88.88)
    diff = d.difference
    assert d.message == (
        "output_throughput fell 12.0% (baseline median 100 [95% CI 99, 101], n=5; "
        f"this run 88 [87.12, 88.88], n=5; difference -12.0% [{diff.ci_low:.1f}, {diff.ci_high:.1f}]); "
        "allowed -5%: a regression"
    )


def test_a_tight_fall_of_1_percent_passes():
    d = decide(THROUGHPUT, TIGHT, scaled(TIGHT, 0.99), 0.95)
    assert d.verdict == "pass" and d.repeats_needed is None
    assert d.difference.width < THROUGHPUT.amount
    assert d.message.endswith("; allowed -5%: passed") and d.message.startswith("output_throughput fell 1.0% (")


def test_noisy_data_at_a_5_percent_threshold_is_undecided_with_the_repeats_it_needs():
    d = decide(THROUGHPUT, NOISY, scaled(NOISY, 0.97), 0.95)
    assert d.verdict == "undecided"
    width = d.difference.width
    assert width > 5
    assert d.repeats_needed == max(math.ceil(5 * (width / 5) ** 2), 6) > 5
    assert f"the interval is {width:.1f}% wide, more than the threshold" in d.message
    assert f"about {d.repeats_needed} repeats of each side would decide it" in d.message


def test_a_change_beyond_the_threshold_whose_interval_holds_zero_is_undecided_not_a_fail():
    current = [80.0, 120.0, 112.0, 115.0, 118.0]  # median 115: +15 %, but as low as 80
    d = decide(TTFT, TIGHT, current, 0.95)
    assert d.difference.change == pytest.approx(15.0)
    assert d.difference.ci_low < 0 < d.difference.ci_high
    assert d.verdict == "undecided"


def test_a_noisy_but_clear_improvement_passes():
    d = decide(TTFT, NOISY, scaled(NOISY, 0.5), 0.95)  # latency halved
    assert d.difference.width > TTFT.amount  # wider than the threshold ...
    assert d.difference.ci_high < TTFT.amount  # ... but wholly on the allowed side
    assert d.verdict == "pass"


def test_a_two_sided_threshold_fails_either_way_and_passes_between():
    base = [1000.0, 1001.0, 999.0]
    assert decide(TOKENS, base, [1020.0, 1021.0, 1019.0], 0.95).verdict == "fail"
    assert decide(TOKENS, base, [980.0, 981.0, 979.0], 0.95).verdict == "fail"
    assert decide(TOKENS, base, [1004.0, 1005.0, 1003.0], 0.95).verdict == "pass"
    wide = decide(TOKENS, base, [900.0, 1000.0, 1100.0], 0.95)
    assert wide.verdict == "undecided" and "allowed +/-1%" in wide.message


def test_an_absolute_threshold_compares_in_the_metric_unit():
    t = parse_fail_on("p99_ttft_ms:+20")[0]
    d = decide(t, TIGHT, [v + 30 for v in TIGHT], 0.95)
    assert d.verdict == "fail" and d.difference.change == 30.0 and not d.difference.relative
    assert "rose 30 (" in d.message and "allowed +20: a regression" in d.message
    assert decide(t, TIGHT, [v + 10 for v in TIGHT], 0.95).verdict == "pass"


def test_a_relative_threshold_against_a_zero_baseline_allows_no_rise():
    t = parse_fail_on("failed:+10%")[0]
    d = decide(t, [0.0], [1.0], 0.95)
    assert d.verdict == "fail" and d.difference.change == 1.0
    assert "allowed +0 (failed:+10% of a baseline median of 0): a regression" in d.message
    noisy = decide(t, [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], 0.95)
    assert noisy.verdict == "undecided" and noisy.repeats_needed is None
    assert noisy.message.endswith("and no number of repeats narrows it to 0")
    assert decide(t, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 0.95).verdict == "pass"


def test_single_runs_are_described_as_exact():
    d = decide(THROUGHPUT, [100.0], [87.7], 0.95)
    assert d.message == (
        "output_throughput fell 12.3% (the baseline is a single run: taken as exact, 100; "
        "this run is a single run: taken as exact, 87.7; difference -12.3% [-12.3, -12.3]); allowed -5%: a regression"
    )
    mixed = decide(THROUGHPUT, [100.0], TIGHT, 0.95)
    assert "(the baseline is a single run: taken as exact, 100; this run 100 [95% CI 99, 101], n=5;" in mixed.message


# --------------------------------------------------------------------------- the repeats needed


def test_repeats_needed_follows_the_square_root_law():
    def diff(width, n_old, n_new):
        return Difference(change=0.0, ci_low=-width / 2, ci_high=width / 2, n_old=n_old, n_new=n_new, relative=True)

    assert repeats_needed(diff(12.0, 5, 5), 5.0) == 29  # 5 * (12 / 5)^2 = 28.8
    assert repeats_needed(diff(5.5, 5, 5), 5.0) == 7  # 5 * 1.21 = 6.05
    assert repeats_needed(diff(5.1, 5, 5), 5.0) == 6  # 5.2: but at least one more than now
    assert repeats_needed(diff(12.0, 1, 5), 5.0) == 29  # a single-run baseline adds no width
    assert repeats_needed(diff(12.0, 3, 6), 5.0) == 24  # harmonic mean 4: 4 * 5.76 = 23.04
    assert repeats_needed(diff(12.0, 5, 5), 0.0) is None
    assert repeats_needed(diff(math.inf, 5, 5), 5.0) is None


# --------------------------------------------------------------------------- single runs


SINGLE_CASES = [
    ("p99_ttft_ms:+10%", 100.0, 110.0),
    ("p99_ttft_ms:+10%", 100.0, 110.5),
    ("p99_ttft_ms:+10%", 100.0, 50.0),
    ("output_throughput:-5%", 1000.0, 950.0),
    ("output_throughput:-5%", 1000.0, 940.0),
    ("output_throughput:-5%", 1000.0, 2000.0),
    ("p99_ttft_ms:+20", 100.0, 120.0),
    ("p99_ttft_ms:+20", 100.0, 120.5),
    ("total_output_tokens:1%", 1000.0, 1010.0),
    ("total_output_tokens:1%", 1000.0, 1011.0),
    ("total_output_tokens:1%", 1000.0, 989.0),
    ("total_output_tokens:-1%", 1000.0, 5000.0),
    ("failed:+10%", 0.0, 1.0),
    ("failed:+10%", 0.0, 0.0),
    ("failed:+2", 0.0, 2.0),
    ("p99_ttft_ms:+0%", 100.0, 100.0),
    ("p99_ttft_ms:+0%", 100.0, 100.000001),
]


@pytest.mark.parametrize(("spec", "base", "now"), SINGLE_CASES)
def test_single_runs_agree_with_check_thresholds(spec, base, now):
    [t] = parse_fail_on(spec)
    violated = bool(check_thresholds({"completed": 1, t.metric: base}, {t.metric: now}, [t]))
    d = decide(t, [base], [now], 0.95)
    assert d.verdict == ("fail" if violated else "pass")


def test_the_single_run_cases_hold_both_verdicts():
    verdicts = {decide(t, [b], [n], 0.95).verdict for s, b, n in SINGLE_CASES for t in parse_fail_on(s)}
    assert verdicts == {"pass", "fail"}


@st.composite
def single_runs(draw):
    metric = draw(st.sampled_from(["p99_ttft_ms", "output_throughput", "total_output_tokens"]))
    bound = {"p99_ttft_ms": "increase", "output_throughput": "decrease"}.get(metric)
    bound = bound or draw(st.sampled_from(["increase", "decrease", "both"]))
    relative = draw(st.booleans())
    amount = draw(st.floats(0, 100 if relative else 1e4, allow_nan=False))
    values = st.floats(0, 1e6, allow_nan=False) | st.sampled_from([0.0, 100.0, 110.0, 90.0, 95.0, 105.0])
    return Threshold(metric, amount, relative, bound), draw(values), draw(values)


@given(single_runs())
def test_single_runs_never_are_undecided_and_agree_with_check_thresholds(case):
    t, base, now = case
    violated = bool(check_thresholds({"completed": 1, t.metric: base}, {t.metric: now}, [t]))
    assert decide(t, [base], [now], 0.95).verdict == ("fail" if violated else "pass")


# --------------------------------------------------------------------------- check_decisions


BASELINE = {"completed": [100, 100, 100], "output_throughput": [100.0, 101.0, 99.0], "p99_ttft_ms": [50.0, 51.0, 49.0]}


def test_check_decisions_decides_each_threshold_in_order():
    current = {"output_throughput": [80.0, 81.0, 79.0], "p99_ttft_ms": [50.0, 50.5, 49.5]}
    result = check_decisions(BASELINE, current, [THROUGHPUT, TTFT], 0.95)
    assert [(d.metric, d.verdict) for d in result.decisions] == [("output_throughput", "fail"), ("p99_ttft_ms", "pass")]
    assert result.failures == [result.decisions[0]]
    assert result.messages == [result.decisions[0].message]


def test_undecided_fails_the_point_only_when_asked():
    current = {"output_throughput": [60.0, 100.0, 140.0], "p99_ttft_ms": [50.0, 50.5, 49.5]}
    lenient = check_decisions(BASELINE, current, [THROUGHPUT, TTFT], 0.95)
    assert [d.verdict for d in lenient.decisions] == ["undecided", "pass"] and lenient.failures == []
    strict = check_decisions(BASELINE, current, [THROUGHPUT, TTFT], 0.95, fail_on_undecided=True)
    assert [d.metric for d in strict.failures] == ["output_throughput"]


def test_a_metric_this_run_did_not_measure_fails():
    result = check_decisions(BASELINE, {"p99_ttft_ms": [50.0, None, 49.0]}, [THROUGHPUT, TTFT], 0.95)
    absent, partial = result.decisions
    assert absent.verdict == partial.verdict == "fail" and result.failures == [absent, partial]
    assert absent.current is None and absent.difference is None
    assert absent.message == (
        "output_throughput was not measured in this run (baseline median 100; threshold output_throughput:-5%)"
    )
    assert partial.message.startswith("p99_ttft_ms was not measured in 1 of the 3 repeats of this run (")
    [nan] = check_decisions(BASELINE, {"output_throughput": [math.nan]}, [THROUGHPUT], 0.95).decisions
    assert nan.verdict == "fail" and nan.current is None


def test_a_baseline_without_the_metric_is_refused_as_check_thresholds_does():
    with pytest.raises(ConfigError, match="has no numeric value for 'mean_itl_ms'"):
        check_decisions(BASELINE, {}, parse_fail_on("mean_itl_ms:+10%"), 0.95)
    with pytest.raises(ConfigError, match="has no numeric value for 'output_throughput'"):
        check_decisions({**BASELINE, "output_throughput": [100.0, None]}, {}, [THROUGHPUT], 0.95)
    with pytest.raises(ConfigError, match="is not a results file"):
        check_decisions({"output_throughput": [100.0]}, {}, [THROUGHPUT], 0.95)


def test_lone_numbers_count_as_single_runs():
    [d] = check_decisions(
        {"completed": 100, "output_throughput": 100.0}, {"output_throughput": 87.7}, [THROUGHPUT], 0.95
    ).decisions
    assert d.verdict == "fail" and d.baseline.n == d.current.n == 1
    assert d == decide(THROUGHPUT, [100.0], [87.7], 0.95)


def test_the_intervals_are_those_of_the_metrics_functions():
    d = decide(TTFT, NOISY, TIGHT, 0.9)
    assert d.baseline == over_repeats(NOISY, 0.9) and d.current == over_repeats(TIGHT, 0.9)
    assert d.difference == difference(NOISY, TIGHT, True, 0.9)
    assert "[90% CI 80, 120]" in d.message


# ------------------------------------------------------------------ latency percentiles over requests
def _samples(scale: float, seed: int, n: int = 5, size: int = 240) -> list[dict[str, list[float]]]:
    rng = np.random.default_rng(seed)
    return [{"itl": list(rng.lognormal(math.log(10 * scale), 0.5, size))} for _ in range(n)]


def _medians(samples):
    return {"median_itl_ms": [float(np.median(s["itl"])) for s in samples], "completed": 240}


ITL = parse_fail_on("median_itl_ms:+5%")[0]


def test_a_10_percent_slower_itl_fails_over_the_requests():
    old, new = _samples(1.0, 1, size=720), _samples(1.1, 2, size=720)
    result = check_decisions(_medians(old), _medians(new), [ITL], baseline_samples=old, current_samples=new)
    (d,) = result.decisions
    assert d.verdict == "fail" and result.failures == [d]
    assert "over the requests" in d.message and "a regression" in d.message
    old_itl, new_itl = [s["itl"] for s in old], [s["itl"] for s in new]
    assert d.difference == difference_over_requests(old_itl, new_itl, 50, True)
    assert d.baseline == over_requests(old_itl, 50) and d.current == over_requests(new_itl, 50)
    over_repeats_only = check_decisions(_medians(old), _medians(new), [ITL]).decisions[0]
    assert over_repeats_only.difference.over == "repeats"


def test_the_same_itl_passes_over_requests():
    old, new = _samples(1.0, 3), _samples(1.0, 4)
    (d,) = check_decisions(_medians(old), _medians(new), [ITL], baseline_samples=old, current_samples=new).decisions
    assert d.verdict == "pass" and d.difference.over == "requests"


def test_request_samples_need_the_series_in_every_repeat_of_both_repeated_sides():
    old, new = _samples(1.0, 5), _samples(1.0, 6)
    assert request_samples("p99_itl_ms", old, new).q == 99
    assert request_samples("median_itl_ms", old, new).q == 50
    assert request_samples("mean_itl_ms", old, new) is None  # a mean is decided over repeats
    assert request_samples("output_throughput", old, new) is None
    assert request_samples("p99_ttft_ms", old, new) is None  # no ttft series kept
    assert request_samples("p99_itl_ms", old[:1], new) is None  # a single run is exact
    assert request_samples("p99_itl_ms", [*old[:4], {"itl": []}], new) is None
    assert request_samples("p99_itl_ms", None, new) is None
