"""The --vllm-fail-on gate: parsing, higher- and lower-is-better checks, messages."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vllm_serve.bench.gates import (
    Threshold,
    check_baseline,
    check_thresholds,
    format_fail_on,
    parse_fail_on,
    percentiles_needed,
)
from pytest_vllm_serve.bench.metrics import METRIC_DIRECTIONS, Direction, metric_direction
from pytest_vllm_serve.errors import ConfigError

BASE = {"duration": 10.0, "completed": 100, "p99_ttft_ms": 100.0, "output_throughput": 1000.0,
        "total_output_tokens": 1000, "failed": 0, "request_goodput": None}  # fmt: skip


# --------------------------------------------------------------------------- parsing


def test_parse_relative_thresholds():
    assert parse_fail_on("p99_ttft_ms:+10%,output_throughput:-5%") == [
        Threshold("p99_ttft_ms", 10.0, relative=True, bound="increase"),
        Threshold("output_throughput", 5.0, relative=True, bound="decrease"),
    ]


def test_parse_absolute_unsigned_and_spaces():
    assert parse_fail_on(" p99_ttft_ms : +20 , output_throughput: 5% ,total_output_tokens:1%") == [
        Threshold("p99_ttft_ms", 20.0, relative=False, bound="increase"),
        Threshold("output_throughput", 5.0, relative=True, bound="decrease"),  # no sign: the worse way
        Threshold("total_output_tokens", 1.0, relative=True, bound="both"),  # neither better: both ways
    ]
    assert parse_fail_on("p99.9_e2el_ms:+2.5%")[0] == Threshold("p99.9_e2el_ms", 2.5, True, "increase")
    assert parse_fail_on("total_output_tokens:-3")[0].bound == "decrease"
    assert parse_fail_on("p99_ttft_ms:-0%")[0] == Threshold("p99_ttft_ms", 0.0, True, "increase")


def test_threshold_text_and_signed_amount():
    t, u = parse_fail_on("p99_ttft_ms:+10%,output_throughput:-5")
    assert str(t) == "p99_ttft_ms:+10%" and t.signed_amount == 10
    assert str(u) == "output_throughput:-5" and u.signed_amount == -5
    assert format_fail_on([t, u]) == "p99_ttft_ms:+10%,output_throughput:-5"


def test_unknown_metric_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        parse_fail_on("p99_ttft:+10%")
    text = str(info.value)
    assert "unknown metric 'p99_ttft' (did you mean p99_ttft_ms?)" in text
    assert "output_throughput" in text and "p<percentile>_<series>_ms" in text and "per_token_itl" in text
    assert "fix:" in text


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("p99_ttft_ms", "is not METRIC:CHANGE"),
        ("p99_ttft_ms:", "is not METRIC:CHANGE"),
        (":+10%", "is not METRIC:CHANGE"),
        ("p99_ttft_ms:+10%,", "is not METRIC:CHANGE"),
        ("p99_ttft_ms:ten%", "is not a change like"),
        ("p99_ttft_ms:+inf", "is not a change like"),
        ("p99_ttft_ms:nan%", "is not a change like"),
        ("p99_ttft_ms:%", "is not a change like"),
        ("p99_ttft_ms:+10%%", "is not a change like"),
        ("p99_ttft_ms:1e999", "is not a change like"),
        ("p99.0_ttft_ms:+10%", "unknown metric"),
        ("p101_ttft_ms:+10%", "unknown metric"),
        ("generated_texts:+1", "unknown metric"),
        ("p99_ttft_ms:-10%", "bounds an improvement"),
        ("output_throughput:+5%", "bounds an improvement"),
        ("output_throughput:-150%", "more than 100%"),
    ],
)
def test_parse_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_fail_on(spec)


def test_wrong_sign_message_gives_the_fix():
    with pytest.raises(ConfigError) as info:
        parse_fail_on("output_throughput:+5%")
    assert "higher output_throughput is better, so a regression is a decrease (-)" in str(info.value)
    assert "fix: write output_throughput:-5%" in str(info.value)


def test_percentiles_needed():
    ts = parse_fail_on("p99.9_ttft_ms:+10%,p50_itl_ms:+5%,mean_e2el_ms:+1%,p99.9_e2el_ms:+1%,output_throughput:-5%")
    assert percentiles_needed(ts) == (99.9, 50.0)


# --------------------------------------------------------------------------- checking


def check(spec: str, **current):
    return check_thresholds(BASE, current, parse_fail_on(spec))


def test_lower_is_better_metric_may_rise_up_to_the_threshold():
    assert check("p99_ttft_ms:+10%", p99_ttft_ms=110.0) == []  # 100 * 1.10
    assert check("p99_ttft_ms:+10%", p99_ttft_ms=50.0) == []  # better
    [v] = check("p99_ttft_ms:+10%", p99_ttft_ms=110.5)
    assert v.metric == "p99_ttft_ms" and v.baseline == 100.0 and v.current == 110.5
    assert v.message == (
        "p99_ttft_ms regressed: baseline 100, new 110.5 (+10.5%), threshold p99_ttft_ms:+10% (limit 110; lower is better)"
    )


def test_higher_is_better_metric_may_fall_up_to_the_threshold():
    assert check("output_throughput:-5%", output_throughput=950.0) == []  # 1000 * 0.95
    assert check("output_throughput:-5%", output_throughput=2000.0) == []  # better
    [v] = check("output_throughput:-5%", output_throughput=940.0)
    assert v.message == (
        "output_throughput regressed: baseline 1000, new 940 (-6.0%), "
        "threshold output_throughput:-5% (limit 950; higher is better)"
    )


def test_absolute_threshold():
    assert check("p99_ttft_ms:+20", p99_ttft_ms=120.0) == []
    [v] = check("p99_ttft_ms:+20", p99_ttft_ms=120.5)
    assert "limit 120" in v.message and "threshold p99_ttft_ms:+20 " in v.message


def test_two_sided_threshold_for_a_metric_neither_better():
    assert check("total_output_tokens:1%", total_output_tokens=1010) == []
    assert check("total_output_tokens:1%", total_output_tokens=990) == []
    assert len(check("total_output_tokens:1%", total_output_tokens=1011)) == 1
    assert len(check("total_output_tokens:1%", total_output_tokens=989)) == 1
    assert check("total_output_tokens:-1%", total_output_tokens=5000) == []  # only a fall is bounded


def test_zero_baseline():
    # failed: 0 in the baseline; +10% of 0 is 0, so any failure breaks it
    [v] = check("failed:+10%", failed=1)
    assert "baseline 0, new 1 (+1)" in v.message
    assert check("failed:+2", failed=2) == []


def test_metric_not_measured_in_this_run_is_a_violation():
    [v] = check("p99_ttft_ms:+10%")
    assert v.current is None
    assert v.message == "p99_ttft_ms was not measured in this run (baseline 100; threshold p99_ttft_ms:+10%)"
    [v] = check("p99_ttft_ms:+10%", p99_ttft_ms=math.nan)
    assert v.current is None


def test_several_thresholds_report_each_violation():
    vs = check("p99_ttft_ms:+10%,output_throughput:-5%", p99_ttft_ms=200.0, output_throughput=10.0)
    assert [v.metric for v in vs] == ["p99_ttft_ms", "output_throughput"]


def test_baseline_must_be_a_results_file_with_the_gated_metric():
    ts = parse_fail_on("p99_ttft_ms:+10%")
    for bad in ([1, 2], "text", {"p99_ttft_ms": 1.0}):
        with pytest.raises(ConfigError, match="is not a results file"):
            check_baseline(bad, ts, source="base.json")
    with pytest.raises(ConfigError, match="has no numeric value for 'mean_per_token_itl_ms'") as info:
        check_thresholds(BASE, {}, parse_fail_on("mean_per_token_itl_ms:+10%"))
    assert "fix:" in str(info.value)
    with pytest.raises(ConfigError, match="request_goodput"):  # None in the file: no goodput SLOs then
        check_baseline(BASE, parse_fail_on("request_goodput:-5%"))
    with pytest.raises(ConfigError, match="every request of that baseline run failed"):
        check_baseline({"completed": 0.0, "failed": 5.0}, ts)
    check_baseline(BASE, ts)


# --------------------------------------------------------------------------- properties

NAMES = sorted(METRIC_DIRECTIONS) + ["p99.9_ttft_ms", "p0.5_send_lag_ms", "p100_e2el_ms"]
ATOMS = NAMES[:8] + [":", ",", "+", "-", "%", " ", "1", "0.5", "1e3", "e", ".", "nan", "inf", "p99.9", "_ms", "\u0661"]


@given(st.one_of(st.text(), st.lists(st.sampled_from(ATOMS), max_size=12).map("".join)))
def test_garbage_raises_only_config_error(spec):
    try:
        thresholds = parse_fail_on(spec)
    except ConfigError:
        return
    for t in thresholds:
        assert metric_direction(t.metric) is not None
        assert t.amount >= 0 and math.isfinite(t.amount)


@st.composite
def thresholds(draw):
    metric = draw(st.sampled_from(NAMES))
    direction = metric_direction(metric)
    relative = draw(st.booleans())
    if direction is Direction.NEITHER:
        bound = draw(st.sampled_from(["increase", "decrease", "both"]))
    else:
        bound = "increase" if direction is Direction.LOWER_IS_BETTER else "decrease"
    top = 100.0 if relative and bound == "decrease" else 1e12
    amount = draw(st.floats(min_value=0, max_value=top, allow_nan=False))
    return Threshold(metric, amount, relative, bound)


@given(st.lists(thresholds(), min_size=1, max_size=5))
def test_valid_specs_round_trip(ts):
    assert parse_fail_on(format_fail_on(ts)) == ts


def test_a_partial_point_is_refused_as_a_baseline(tmp_path):
    """A point cut short by a dead or stalled server is no baseline: it is kept apart, and named."""
    import json

    from pytest_vllm_serve.bench.sinks.baseline import load_baseline

    metrics = {"completed": 18.0, "failed": 182.0, "p99_ttft_ms": 5.0}
    path = tmp_path / "summary.json"
    path.write_text(
        json.dumps(
            {
                "format": "pytest-vllm-serve/results-v1",
                "points": [
                    {
                        "id": "t.py::test_rate[rate=4]",
                        "metrics": metrics,
                        "partial": "the server died: process 1 exited",
                    },
                    {"id": "t.py::test_rate[rate=8]", "metrics": metrics, "partial": None},
                ],
            }
        )
    )
    baseline = load_baseline(path)
    assert baseline.get("t.py::test_rate[rate=4]") is None
    assert baseline.get("t.py::test_rate[rate=8]")["p99_ttft_ms"] == 5.0
    assert baseline.partial == {"t.py::test_rate[rate=4]": "the server died: process 1 exited"}
    note = baseline.note()
    assert "1 partial point(s) refused as a baseline, not gated: test_rate[rate=4] (the server died" in note
