"""Serving metrics with ``vllm bench serve``'s exact definitions, and a few beside them.

The package's modules: common (constants), stats, per_request, compute (the point's
metrics), names, vllm_result (vLLM's result file), goodput, intervals (medians and
bootstrap confidence intervals over repeats) and steady (the steady-state window). Pure
functions over :class:`~pytest_vllm_serve.bench.records.RequestRecord` lists: no I/O,
no clock. The formulas are those of ``vllm.benchmarks.serve.calculate_metrics`` and
``benchmark()`` (numpy mean, population std, median, linear-interpolation
percentiles), so the numbers can be compared with ``vllm bench serve`` one to one.
Every formula is written out in ``docs/metrics.md``.

What this module adds is always *beside* vLLM's metrics, under names vLLM does not
use: per-token ITL, send lag, scheduled and achieved request rates, and an exact
peak concurrency.

One rule differs on purpose: when no measured request succeeded, vLLM reports zeros;
:func:`compute_metrics` raises :class:`AllRequestsFailedError` instead.
"""

from __future__ import annotations

from pytest_vllm_serve.bench.metrics.common import (
    DEFAULT_PERCENTILES,
    EXTRA_SERIES,
    GOODPUT_METRICS,
    MS_PER_S,
    SERIES,
    VLLM_SERIES,
    AllRequestsFailedError,
    TokenCounter,
)
from pytest_vllm_serve.bench.metrics.compute import (
    BenchmarkMetrics,
    compute_metrics,
    exact_peak_concurrency,
    series_samples,
)
from pytest_vllm_serve.bench.metrics.goodput import format_goodput, format_number, parse_goodput, parse_number
from pytest_vllm_serve.bench.metrics.intervals import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Difference,
    Interval,
    coefficient_of_variation,
    difference,
    difference_over_requests,
    over_repeats,
    over_requests,
)
from pytest_vllm_serve.bench.metrics.names import (
    METRIC_DIRECTIONS,
    SCALAR_DIRECTIONS,
    SEARCH_DIRECTIONS,
    Direction,
    describe_metric_names,
    metric_direction,
    metric_values,
    none_items,
    parse_series_metric,
    percentile_of,
    require_metric,
    series_metric_names,
    stats_items,
    suggest_metric,
)
from pytest_vllm_serve.bench.metrics.per_request import (
    failure_reason,
    input_len,
    is_measured_success,
    is_strict_success,
    output_len,
    per_token_itl,
    request_latency,
    request_tpot,
    request_ttft,
)
from pytest_vllm_serve.bench.metrics.per_turn import per_turn_metrics
from pytest_vllm_serve.bench.metrics.stats import Stats, compute_stats, percentile_label, validate_percentiles
from pytest_vllm_serve.bench.metrics.steady import request_end, steady_state, window_duration
from pytest_vllm_serve.bench.metrics.vllm_result import DETAILED_KEYS, to_vllm_result

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_PERCENTILES",
    "DEFAULT_RESAMPLES",
    "DETAILED_KEYS",
    "EXTRA_SERIES",
    "GOODPUT_METRICS",
    "METRIC_DIRECTIONS",
    "MS_PER_S",
    "SCALAR_DIRECTIONS",
    "SEARCH_DIRECTIONS",
    "SERIES",
    "VLLM_SERIES",
    "AllRequestsFailedError",
    "BenchmarkMetrics",
    "Difference",
    "Direction",
    "Interval",
    "Stats",
    "TokenCounter",
    "coefficient_of_variation",
    "compute_metrics",
    "compute_stats",
    "describe_metric_names",
    "difference",
    "difference_over_requests",
    "exact_peak_concurrency",
    "failure_reason",
    "format_goodput",
    "format_number",
    "input_len",
    "is_measured_success",
    "is_strict_success",
    "metric_direction",
    "metric_values",
    "none_items",
    "output_len",
    "over_repeats",
    "over_requests",
    "parse_goodput",
    "parse_number",
    "parse_series_metric",
    "per_token_itl",
    "per_turn_metrics",
    "percentile_label",
    "percentile_of",
    "request_end",
    "request_latency",
    "request_tpot",
    "request_ttft",
    "require_metric",
    "series_metric_names",
    "series_samples",
    "stats_items",
    "steady_state",
    "suggest_metric",
    "to_vllm_result",
    "validate_percentiles",
    "window_duration",
]
