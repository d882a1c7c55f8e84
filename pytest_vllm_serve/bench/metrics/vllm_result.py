"""The point as vllm bench serve's --save-result JSON (same keys)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pytest_vllm_serve.bench.metrics.common import EXTRA_SERIES, VLLM_SERIES, TokenCounter
from pytest_vllm_serve.bench.metrics.compute import BenchmarkMetrics
from pytest_vllm_serve.bench.metrics.names import none_items, stats_items
from pytest_vllm_serve.bench.metrics.per_request import failure_reason, input_len, is_measured_success, output_len
from pytest_vllm_serve.bench.records import RequestRecord

#: Per-request lists that ``vllm bench serve`` only keeps with ``--save-detailed``.
DETAILED_KEYS = ("input_lens", "output_lens", "start_times", "ttfts", "itls", "generated_texts", "errors")


def _json_rate(rate: float | None) -> float | str | None:
    if rate is None:
        return None
    return float(rate) if math.isfinite(rate) else "inf"


def to_vllm_result(
    metrics: BenchmarkMetrics,
    records: Iterable[RequestRecord],
    detailed: bool = True,
    count_tokens: TokenCounter | None = None,
) -> dict[str, Any]:
    """The keys of ``vllm bench serve --save-result``, then this plugin's own keys.

    ``records`` are those ``metrics`` came from (warmup records are skipped); per-request
    lists follow the workload order; ``count_tokens`` must be the one ``metrics`` were
    computed with. The caller adds the run's setup keys (date,
    backend, model_id, tokenizer_id, num_prompts, request_rate, burstiness,
    max_concurrency). ``detailed=False`` drops the per-request lists as vLLM does
    without ``--save-detailed``. Everything is plain JSON (int, float, str, None, list, dict).

    vLLM writes 0 for a series without samples (``np.mean(x or 0)``); so does this
    dict for vLLM's keys, while this plugin's keys are ``None`` then.
    """
    ordered = sorted((r for r in records if not r.warmup), key=lambda r: r.index)
    result: dict[str, Any] = {
        "duration": metrics.duration,
        "completed": metrics.completed,
        "failed": metrics.failed,
        "total_input_tokens": metrics.total_input_tokens,
        "total_output_tokens": metrics.total_output_tokens,
        "request_throughput": metrics.request_throughput,
        "request_goodput": metrics.request_goodput,
        "output_throughput": metrics.output_throughput,
        "total_token_throughput": metrics.total_token_throughput,
    }
    if detailed:
        result.update(
            {
                "input_lens": [input_len(r) for r in ordered],
                "output_lens": [output_len(r, count_tokens) if is_measured_success(r) else 0 for r in ordered],
                # vLLM leaves ttft/latency at 0.0 when a request fails (ttft is kept when
                # a chunk arrived before the failure)
                "ttfts": [r.ttft if r.ttft is not None else 0.0 for r in ordered],
                "itls": [r.itl for r in ordered],
            }
        )
    # vLLM keeps latencies and queue_times even without --save-detailed
    result["latencies"] = [r.latency if is_measured_success(r) else 0.0 for r in ordered]
    if detailed:
        result["start_times"] = [r.send_time for r in ordered]
    result["queue_times"] = [r.queue_time for r in ordered]
    if detailed:
        # vLLM keeps the text of a completed request only: a failure's is "" (its
        # error is vLLM's own text; this plugin writes its one-line reason)
        result["generated_texts"] = [r.generated_text if is_measured_success(r) else "" for r in ordered]
        result["errors"] = ["" if is_measured_success(r) else (r.error or failure_reason(r)) for r in ordered]
    result.update(
        {
            "max_output_tokens_per_s": metrics.max_output_tokens_per_s,
            "max_concurrent_requests": metrics.max_concurrent_requests,
            "rtfx": 0.0,
        }
    )
    for series in VLLM_SERIES:
        stats = getattr(metrics, series)
        result.update(stats_items(series, stats) if stats else none_items(series, metrics.percentiles, 0.0))

    # this plugin's keys, beside vLLM's
    for series in EXTRA_SERIES:
        stats = getattr(metrics, series)
        result.update(stats_items(series, stats) if stats else none_items(series, metrics.percentiles, None))
    result.update(
        {
            "exact_peak_concurrent_requests": metrics.exact_peak_concurrent_requests,
            "target_request_rate": _json_rate(metrics.target_request_rate),
            "scheduled_request_rate": _json_rate(metrics.scheduled_request_rate),
            "achieved_request_rate": _json_rate(metrics.achieved_request_rate),
            "failure_reasons": dict(metrics.failure_reasons),
            "completed_strict": metrics.completed_strict,
            "stream_errors": metrics.stream_errors,
            "stream_error_reasons": dict(metrics.stream_error_reasons),
            "warmup_excluded": metrics.warmup_excluded,
            "goodput_slos_ms": dict(metrics.goodput_slos) if metrics.goodput_slos else None,
            "metric_percentiles": list(metrics.percentiles),
        }
    )
    if detailed:
        result["scheduled_times"] = [r.scheduled_time for r in ordered]
        result["dispatch_times"] = [r.dispatch_time for r in ordered]
        result["chunk_tokens"] = [list(r.chunk_tokens) for r in ordered]
        result["stream_error_per_request"] = [r.stream_error or "" for r in ordered]
    return result
