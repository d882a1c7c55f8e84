"""Metric names: the flat keys of a point, their direction, and help for misspelt ones."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Sequence
from enum import Enum

from pytest_vllm_serve.bench.metrics.common import DEFAULT_PERCENTILES, MS_PER_S, SERIES
from pytest_vllm_serve.bench.metrics.compute import BenchmarkMetrics
from pytest_vllm_serve.bench.metrics.stats import Stats, percentile_label, validate_percentiles
from pytest_vllm_serve.errors import ConfigError


class Direction(Enum):
    """Which way a metric gets better; NEITHER for quantities that only describe the run."""

    HIGHER_IS_BETTER = "higher"
    LOWER_IS_BETTER = "lower"
    NEITHER = "neither"


#: Scalar metrics by name (the vLLM result keys, then this plugin's), and their direction.
SCALAR_DIRECTIONS: dict[str, Direction] = {
    "duration": Direction.LOWER_IS_BETTER,
    "completed": Direction.HIGHER_IS_BETTER,
    "failed": Direction.LOWER_IS_BETTER,
    "completed_strict": Direction.HIGHER_IS_BETTER,
    "stream_errors": Direction.LOWER_IS_BETTER,
    "total_input_tokens": Direction.NEITHER,
    "total_output_tokens": Direction.NEITHER,
    "request_throughput": Direction.HIGHER_IS_BETTER,
    "request_goodput": Direction.HIGHER_IS_BETTER,
    "output_throughput": Direction.HIGHER_IS_BETTER,
    "total_token_throughput": Direction.HIGHER_IS_BETTER,
    "max_output_tokens_per_s": Direction.HIGHER_IS_BETTER,
    "max_concurrent_requests": Direction.NEITHER,
    "exact_peak_concurrent_requests": Direction.NEITHER,
    "scheduled_request_rate": Direction.NEITHER,
    "achieved_request_rate": Direction.HIGHER_IS_BETTER,
}

#: What a search over points answers, gated by --vllm-fail-on like a point's metric (bench/slo.py).
SEARCH_DIRECTIONS: dict[str, Direction] = {"slo_best": Direction.HIGHER_IS_BETTER}

_STAT_PREFIXES = ("mean", "median", "std")


def series_metric_names(series: str, percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> list[str]:
    """mean_/median_/std_/pNN_<series>_ms, in vLLM's order."""
    names = [f"{prefix}_{series}_ms" for prefix in _STAT_PREFIXES]
    return names + [f"p{percentile_label(p)}_{series}_ms" for p in validate_percentiles(percentiles)]


#: Every metric name with the default percentiles, and which way is better. Any other
#: percentile works the same way (``p99.9_ttft_ms``); see :func:`metric_direction`.
METRIC_DIRECTIONS: dict[str, Direction] = {
    **SCALAR_DIRECTIONS,
    **SEARCH_DIRECTIONS,
    **{name: Direction.LOWER_IS_BETTER for s in SERIES for name in series_metric_names(s)},
}

_SERIES_NAME = re.compile(
    r"(?:(mean|median|std)|p(\d+(?:\.\d+)?))_(" + "|".join(sorted(SERIES, key=len, reverse=True)) + r")_ms",
    re.ASCII,
)


def parse_series_metric(name: str) -> tuple[str, float | None, str] | None:
    """Split "p99.9_ttft_ms" into ("p", 99.9, "ttft"), "mean_itl_ms" into ("mean", None, "itl").

    None when ``name`` is not a series metric, or names a percentile outside 0..100 or
    not in vLLM's spelling (``p99.0_ttft_ms`` is spelled ``p99_ttft_ms``).
    """
    m = _SERIES_NAME.fullmatch(name)
    if not m:
        return None
    stat, p, series = m.groups()
    if stat:
        return stat, None, series
    value = float(p)
    if value > 100 or percentile_label(value) != p:
        return None
    return "p", value, series


def percentile_of(name: str) -> tuple[float, str] | None:
    """The percentile and series a latency metric names: "p99_ttft_ms" -> (99.0, "ttft"),
    "median_itl_ms" -> (50.0, "itl") (vLLM's median is numpy's, the 50th percentile);
    None for means, standard deviations and anything that is not a series metric."""
    parsed = parse_series_metric(name)
    if parsed is None:
        return None
    stat, q, series = parsed
    if stat == "median":
        return 50.0, series
    return (q, series) if stat == "p" and q is not None else None


def metric_direction(name: str) -> Direction | None:
    """Which way ``name`` gets better, or None when it is not a metric name."""
    if name in METRIC_DIRECTIONS:
        return METRIC_DIRECTIONS[name]
    return Direction.LOWER_IS_BETTER if parse_series_metric(name) else None


def describe_metric_names() -> str:
    """The valid metric names, for error messages."""
    return (
        ", ".join(SCALAR_DIRECTIONS)
        + "; and for each series "
        + ", ".join(SERIES)
        + ": mean_<series>_ms, median_<series>_ms, std_<series>_ms and p<percentile>_<series>_ms "
        "(e.g. p99_ttft_ms, p99.9_e2el_ms); and slo_best, the answer of test_slo_search"
    )


def require_metric(name: str, option: str, fix: str) -> Direction:
    """``name``'s direction, or a ConfigError from ``option`` that names the near miss, the
    valid names and ``fix`` (a line starting with "  fix:")."""
    direction = metric_direction(name)
    if direction is None:
        raise ConfigError(
            f"{option} names an unknown metric {name!r}{suggest_metric(name)}.\n"
            f"  valid metrics: {describe_metric_names()}.\n{fix}"
        )
    return direction


def suggest_metric(name: str) -> str:
    """' (did you mean ...?)' for a near miss, else ''."""
    close = difflib.get_close_matches(name, METRIC_DIRECTIONS, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _series(metrics: BenchmarkMetrics) -> dict[str, Stats | None]:
    return {s: getattr(metrics, s) for s in SERIES}


def metric_values(metrics: BenchmarkMetrics) -> dict[str, float]:
    """Every scalar metric by its stable name (latencies in ms), for gates and tables.

    Names are those of :data:`METRIC_DIRECTIONS` (with ``metrics.percentiles``).
    A metric that was not measured is left out: ``request_goodput`` without SLOs, the
    ``tpot``/``itl``/``per_token_itl`` series without any sample, a request rate from
    fewer than two requests, and a rate that is infinite (every request at one instant).
    """
    values: dict[str, float] = {}
    for name in SCALAR_DIRECTIONS:
        value = getattr(metrics, name)
        if value is not None and math.isfinite(value):
            values[name] = value
    for series, stats in _series(metrics).items():
        if stats is not None:
            values.update(stats_items(series, stats))
    return values


def stats_items(series: str, stats: Stats) -> dict[str, float]:
    # vLLM: np.mean(values) * 1000, and so on; the same float arithmetic
    items = {
        f"mean_{series}_ms": stats.mean * MS_PER_S,
        f"median_{series}_ms": stats.median * MS_PER_S,
        f"std_{series}_ms": stats.std * MS_PER_S,
    }
    for p, value in stats.percentiles.items():
        items[f"p{percentile_label(p)}_{series}_ms"] = value * MS_PER_S
    return items


def none_items(series: str, percentiles: Sequence[float], fill: float | None) -> dict[str, float | None]:
    return {name: fill for name in series_metric_names(series, percentiles)}
