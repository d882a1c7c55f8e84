"""SLOs and the search for the highest load that meets them (bench/slo.py): the parsing, its
errors, and the search against simulated servers whose capacity is known."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vllm_serve.bench.gates import parse_fail_on
from pytest_vllm_serve.bench.slo import SloBound, SloSearch, gate_best, meets, parse_slo, parse_tolerance, probe_verdict
from pytest_vllm_serve.errors import ConfigError


def test_an_slo_is_parsed_into_bounds():
    bounds, warnings = parse_slo("p99_ttft_ms<=500, p99_tpot_ms <= 50,output_throughput>=1000")
    assert bounds == [
        SloBound("p99_ttft_ms", "<=", 500.0),
        SloBound("p99_tpot_ms", "<=", 50.0),
        SloBound("output_throughput", ">=", 1000.0),
    ]
    assert warnings == []
    assert meets(bounds, {"p99_ttft_ms": 400, "p99_tpot_ms": 50, "output_throughput": 1200})
    assert not meets(bounds, {"p99_ttft_ms": 400, "p99_tpot_ms": 51, "output_throughput": 1200})
    assert not meets(bounds, {"p99_ttft_ms": 400, "output_throughput": 1200})  # not measured: not met


def test_a_bound_the_better_way_is_kept_with_a_warning():
    _, warnings = parse_slo("output_throughput<=1000")
    assert len(warnings) == 1 and "did you mean output_throughput>=1000" in warnings[0]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "is empty"),
        ("p99_ttft_ms=500", "is not METRIC<=VALUE"),
        ("p99_ttfx_ms<=500", "unknown metric 'p99_ttfx_ms'"),
        ("p99_ttft_ms<=fast", "'fast' is not a number"),
        ("p99_ttft_ms<=inf", "finite number"),
    ],
)
def test_a_bad_slo_is_refused_with_the_fix(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_slo(spec)
    assert "fix:" in str(info.value)


def run(search: SloSearch, capacity: float) -> SloSearch:
    """A server that meets the SLO at every load up to ``capacity``."""
    while (value := search.next_value()) is not None:
        search.record(value, value <= capacity)
    return search


def test_the_search_brackets_by_doubling_then_bisects():
    search = run(SloSearch(start=1, tolerance=0.1), capacity=11.3)
    values = [p.value for p in search.probes]
    assert values[:5] == [1, 2, 4, 8, 16]  # doubling until 16 fails
    low, high = search.bracket
    assert low <= 11.3 < high and (high - low) <= 0.1 * high
    assert search.best == low and search.stopped is None


def test_the_first_probe_failing_stops_the_search_with_the_reason():
    search = run(SloSearch(start=4), capacity=2)
    assert [p.value for p in search.probes] == [4] and search.best is None
    assert "first probe (4) already fails" in search.stopped


def test_the_upper_bound_ends_a_search_that_always_passes():
    search = run(SloSearch(start=1, upper=10), capacity=1e9)
    assert [p.value for p in search.probes] == [1, 2, 4, 8, 10]
    assert search.best == 10 and "upper bound 10" in search.stopped


def test_concurrency_is_searched_in_whole_numbers():
    search = run(SloSearch(start=1, integer=True, tolerance=0.01), capacity=37)
    assert all(p.value == int(p.value) for p in search.probes)
    assert search.bracket == (37, 38)


def test_the_probe_budget_is_kept():
    search = run(SloSearch(start=1, tolerance=0.001, max_probes=6), capacity=100)
    assert len(search.probes) == 6


@given(st.floats(1.0, 10_000.0), st.floats(0.5, 8.0), st.sampled_from([0.05, 0.1, 0.25]))
def test_the_answer_brackets_the_capacity_within_the_tolerance(capacity, start, tolerance):
    search = run(SloSearch(start=start, tolerance=tolerance, max_probes=40), capacity)
    low, high = search.bracket
    if low is None:
        assert start > capacity
    else:
        assert low <= capacity < high and (high - low) <= tolerance * high


def test_the_search_is_written_as_slo_search_json():
    bounds, _ = parse_slo("p99_ttft_ms<=500")
    search = SloSearch(start=2)
    search.record(2, True, {"p99_ttft_ms": 100})
    search.record(4, False, {"p99_ttft_ms": 900})
    data = search.to_json("request_rate", bounds)
    assert data["best"] == 2 and data["bracket"] == [2, 4] and data["slo"] == {"p99_ttft_ms": "<=500"}
    assert data["probes"][1] == {"value": 4, "passed": False, "metrics": {"p99_ttft_ms": 900}}


@pytest.mark.parametrize("kwargs, message", [({"start": 0}, "positive"), ({"start": 1, "tolerance": 1.5}, "between 0 and 1"), ({"start": 1, "max_probes": 0}, "at least 1")])  # fmt: skip
def test_bad_search_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SloSearch(**kwargs)


def test_the_budget_running_out_is_said():
    search = run(SloSearch(start=1, tolerance=0.001, max_probes=3), capacity=100)
    assert "probe budget (3, --vllm-slo-max-probes) ran out while every probe met the SLO" in search.stopped
    search = run(SloSearch(start=1, tolerance=0.001, max_probes=5), capacity=5)
    assert "ran out before the bracket narrowed" in search.stopped
    search = run(SloSearch(start=1, tolerance=0.5, max_probes=5), capacity=5)  # narrow enough in 5
    assert search.stopped is None


@pytest.mark.parametrize("text, value", [("10%", 0.1), ("0.25", 0.25), (" 5 % ", 0.05)])
def test_the_tolerance_is_a_fraction_or_a_percentage(text, value):
    assert parse_tolerance(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["0", "1", "150%", "wide", "-0.1"])
def test_a_bad_tolerance_is_refused(text):
    with pytest.raises(ConfigError, match="--vllm-slo-tolerance"):
        parse_tolerance(text)


def test_slo_best_is_no_metric_of_a_point():
    with pytest.raises(ConfigError, match="slo_best is the search's answer"):
        parse_slo("slo_best>=4")


def test_a_single_run_probe_is_decided_by_its_values():
    bounds, _ = parse_slo("p99_ttft_ms<=500,output_throughput>=100")
    assert probe_verdict(bounds, {"p99_ttft_ms": 499, "output_throughput": 100}) == ("pass", [])
    verdict, reasons = probe_verdict(bounds, {"p99_ttft_ms": 612.345, "output_throughput": 100})
    assert verdict == "fail" and reasons == ["p99_ttft_ms 612.3 breaks p99_ttft_ms<=500"]
    assert probe_verdict(bounds, {"p99_ttft_ms": 1})[1] == [
        "output_throughput not measured breaks output_throughput>=100"
    ]


def test_a_repeated_probe_is_decided_over_its_interval():
    bounds, _ = parse_slo("p99_ttft_ms<=500,output_throughput>=100")

    def verdict(ttft, tput):
        names = ("ci_low", "median", "ci_high")
        return probe_verdict(
            bounds,
            {"p99_ttft_ms": ttft[1], "output_throughput": tput[1]},
            {"p99_ttft_ms": dict(zip(names, ttft)), "output_throughput": dict(zip(names, tput))},
        )

    assert verdict((400, 450, 499), (100, 120, 140)) == ("pass", [])
    undecided = verdict((400, 450, 520), (100, 120, 140))  # the median meets it, the interval straddles it
    assert undecided == ("undecided", ["p99_ttft_ms 450 [400, 520] straddles p99_ttft_ms<=500"])
    assert verdict((501, 550, 600), (100, 120, 140))[0] == "fail"
    assert verdict((400, 450, 520), (50, 60, 99))[0] == "fail"  # one bound broken outright: fail
    assert verdict((400, 450, 480), (90, 110, 130))[0] == "undecided"  # >= straddled too


def test_slo_best_gates_the_answer_against_the_baseline():
    thresholds = parse_fail_on("slo_best:-10%")
    assert gate_best(thresholds, 10.0, 9.5) == []
    assert gate_best(thresholds, 10.0, 8.0) == [
        "slo_best regressed: baseline 10, new 8 (-20.0%), threshold slo_best:-10% (limit 9; higher is better)"
    ]
    assert "no load met the SLO in this run" in gate_best(thresholds, 10.0, None)[0]
    absolute = parse_fail_on("slo_best:-2")  # in the variable's own unit
    assert gate_best(absolute, 10.0, 8.5) == [] and gate_best(absolute, 10.0, 7.5) != []
    with pytest.raises(ConfigError, match="bounds an improvement"):
        parse_fail_on("slo_best:+10%")
