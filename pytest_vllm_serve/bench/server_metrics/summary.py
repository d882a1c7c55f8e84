"""A measured phase's server figures from its snapshots: pure functions (docs/server-metrics.md).

Gauges: the mean and the max over the snapshots (sampled every --vllm-metrics-interval).
Counters and histograms: the difference between the phase's first and last snapshot, summed
over engines. Histogram quantiles interpolate linearly within a bucket, as Prometheus'
``histogram_quantile`` does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from pytest_vllm_serve.bench.server_metrics.parse import Snapshot

#: flat name -> (gauge, how engines combine: sum for counts of requests, max for a fraction)
GAUGES: dict[str, tuple[str, Callable[[list[float]], float]]] = {
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", max),
    "running": ("vllm:num_requests_running", sum),
    "waiting": ("vllm:num_requests_waiting", sum),
}
#: flat name -> counter
COUNTERS = {
    "preemptions": "vllm:num_preemptions_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
}
#: flat name -> histogram (seconds), reported in ms
HISTOGRAMS = {
    "ttft": "vllm:time_to_first_token_seconds",
    "itl": "vllm:inter_token_latency_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
    "queue": "vllm:request_queue_time_seconds",
}
SPEC_DRAFTS = "vllm:spec_decode_num_drafts_total"
SPEC_DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens_total"
SPEC_ACCEPTED = "vllm:spec_decode_num_accepted_tokens_total"


def gauge_values(snapshot: Snapshot, name: str, combine: Callable[[list[float]], float]) -> float | None:
    """The gauge over the snapshot's engines, combined."""
    found = [v for (n, _), v in snapshot.values.items() if n == name]
    return float(combine(found)) if found else None


def gauge_stats(
    series: Sequence[Snapshot], name: str, combine: Callable[[list[float]], float]
) -> tuple[float, float] | None:
    """(mean, max) of a gauge over the snapshots that have it."""
    values = [v for s in series if (v := gauge_values(s, name, combine)) is not None]
    if not values:
        return None
    return statistics.fmean(values), max(values)


def counter_delta(first: Snapshot, last: Snapshot, name: str) -> float | None:
    start, end = first.total(name), last.total(name)
    if start is None or end is None:
        return None
    return end - start


def _buckets(snapshot: Snapshot, histogram: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for (name, labels), value in snapshot.values.items():
        le = dict(labels).get("le")
        if name == f"{histogram}_bucket" and le is not None:
            out[float(le)] = out.get(float(le), 0.0) + value
    return out


def bucket_deltas(first: Snapshot, last: Snapshot, histogram: str) -> list[tuple[float, float]]:
    """The phase's cumulative buckets (upper bound, count), summed over engines, sorted."""
    end, start = _buckets(last, histogram), _buckets(first, histogram)
    return [(le, end[le] - start.get(le, 0.0)) for le in sorted(end)]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets, +Inf last:
    the bucket holding rank q x total, and a linear interpolation within it (from 0 for the
    first bucket); a rank in the +Inf bucket gives the largest finite bound. None: no count."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for i, (le, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(le):
                return buckets[i - 1][0] if i > 0 else None
            if i == 0 and le <= 0:
                return le
            in_bucket = count - prev_count
            if in_bucket <= 0:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / in_bucket
        prev_le, prev_count = le, count
    return None


def histogram_figures(first: Snapshot, last: Snapshot, histogram: str) -> dict[str, float]:
    """The phase's count, and its mean, p50 and p99 in ms (from the sum and the buckets)."""
    count = counter_delta(first, last, f"{histogram}_count")
    total = counter_delta(first, last, f"{histogram}_sum")
    if count is None or total is None:
        return {}
    figures = {"count": count}
    if count > 0:
        figures["mean_ms"] = 1000 * total / count
        buckets = bucket_deltas(first, last, histogram)
        for q, name in ((0.5, "p50_ms"), (0.99, "p99_ms")):
            value = histogram_quantile(q, buckets)
            if value is not None:
                figures[name] = 1000 * value
    return figures


def summarize(series: Sequence[Snapshot]) -> dict[str, float]:
    """The phase's flat server figures (docs/server-metrics.md names each); empty for fewer
    than two snapshots."""
    if len(series) < 2:
        return {}
    first, last = series[0], series[-1]
    out: dict[str, float] = {}
    for flat, (name, combine) in GAUGES.items():
        stats = gauge_stats(series, name, combine)
        if stats is not None:
            out[f"{flat}_mean"], out[f"{flat}_max"] = stats
    for flat, name in COUNTERS.items():
        delta = counter_delta(first, last, name)
        if delta is not None:
            out[flat] = delta
    if out.get("prefix_cache_queries"):
        out["prefix_cache_hit_rate"] = out.get("prefix_cache_hits", 0.0) / out["prefix_cache_queries"]
    for flat, name in HISTOGRAMS.items():
        for key, value in histogram_figures(first, last, name).items():
            out[f"{flat}_{key}"] = value
    out.update(spec_decode(first, last))
    return out


def spec_decode(first: Snapshot, last: Snapshot) -> dict[str, float]:
    """Speculative decoding, when the server has it: the acceptance rate (accepted / draft
    tokens) and the mean accepted length (1 + accepted / drafts), vLLM's definitions."""
    drafts = counter_delta(first, last, SPEC_DRAFTS)
    draft_tokens = counter_delta(first, last, SPEC_DRAFT_TOKENS)
    accepted = counter_delta(first, last, SPEC_ACCEPTED)
    out = {}
    if accepted is not None and draft_tokens:
        out["spec_decode_acceptance_rate"] = accepted / draft_tokens
    if accepted is not None and drafts:
        out["spec_decode_mean_accepted_length"] = 1 + accepted / drafts
    return out


def client_gaps(figures: dict[str, float], client_ttft_mean_ms: float, client_e2e_mean_ms: float) -> dict[str, float]:
    """Mean client minus mean server TTFT and E2E, in ms: the network, HTTP and client time."""
    out = {}
    if "ttft_mean_ms" in figures:
        out["ttft_gap_ms"] = client_ttft_mean_ms - figures["ttft_mean_ms"]
    if "e2e_mean_ms" in figures:
        out["e2e_gap_ms"] = client_e2e_mean_ms - figures["e2e_mean_ms"]
    return out
