"""SLOs and the search for the highest load that meets them (bench/slo.py): the parsing, its
errors, and the search against simulated servers whose capacity is known."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vllm_serve.bench.slo import SloBound, SloSearch, meets, parse_slo
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
