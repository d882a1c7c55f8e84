"""One benchmark point's metrics from its request records (vLLM's calculate_metrics)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pytest_vllm_serve.bench.metrics.common import (
    DEFAULT_PERCENTILES,
    GOODPUT_METRICS,
    MS_PER_S,
    AllRequestsFailedError,
    TokenCounter,
)
from pytest_vllm_serve.bench.metrics.per_request import (
    failure_reason,
    input_len,
    is_measured_success,
    output_len,
    per_token_itl,
    request_latency,
    request_tpot,
    request_ttft,
)
from pytest_vllm_serve.bench.metrics.stats import Stats, compute_stats, validate_percentiles
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.errors import ConfigError


@dataclass(frozen=True)
class BenchmarkMetrics:
    """Everything measured over one benchmark run. Latency ``Stats`` are in seconds.

    vLLM's fields keep vLLM's names (``ttft`` is vLLM's TTFT, and so on). A ``Stats``
    is ``None`` when the series has no sample at all: ``itl`` when every successful
    request streamed a single chunk with a choice, ``tpot`` when none had more than one
    output token. vLLM writes 0 for those.
    """

    duration: float  # s, the benchmark duration the caller measured
    percentiles: tuple[float, ...]
    # counts (measured requests only; warmup requests are excluded from everything)
    completed: int  # vLLM's: no failure, at least one chunk with a choice
    failed: int
    failure_reasons: dict[str, int]  # reason -> count
    # beside vLLM's counts: completed = completed_strict + stream_errors
    completed_strict: int  # completed, and the stream had no error event and closed with [DONE]
    stream_errors: int  # completed as vLLM counts it, but with an error event or no [DONE]
    stream_error_reasons: dict[str, int]  # reason -> count, over those
    warmup_excluded: int
    total_input_tokens: int
    total_output_tokens: int
    # throughputs, vLLM definitions
    request_throughput: float  # req/s
    request_goodput: float | None  # req/s, None without goodput SLOs
    goodput_slos: dict[str, float] | None  # ms, as given
    output_throughput: float  # tok/s
    total_token_throughput: float  # tok/s
    max_output_tokens_per_s: float  # vLLM: token chunks in the busiest 1-s bucket
    max_concurrent_requests: int  # vLLM: requests active in the busiest 1-s bucket
    # latencies, vLLM definitions (seconds)
    ttft: Stats
    tpot: Stats | None
    itl: Stats | None
    e2el: Stats
    client_queue_time: Stats
    e2el_including_client_queue: Stats
    # beside vLLM
    per_token_itl: Stats | None
    send_lag: Stats  # s, dispatch - scheduled, over every measured request
    exact_peak_concurrent_requests: int  # sweep-line over [send, last token chunk)
    target_request_rate: float | None  # req/s, what the caller asked for
    # req/s, (n-1) / span of the scheduled and of the actual send times; None below two
    # requests, inf when every request was at one instant
    scheduled_request_rate: float | None
    achieved_request_rate: float | None


def _rate(times: Sequence[float]) -> float | None:
    """Requests per second over a run of send times: gaps / span (None below two)."""
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else math.inf


def _vllm_peaks(ok: Sequence[RequestRecord]) -> tuple[float, int]:
    """vLLM's max_output_tokens_per_s and max_concurrent_requests, same arithmetic.

    Buckets of one second from the first send; each token *chunk* counts as one token;
    a request counts in every bucket from its send's to its last chunk's.
    """
    min_start = min(r.send_time for r in ok)
    max_end = max(r.send_time + request_latency(r) for r in ok)
    n = int(np.ceil(max_end - min_start)) + 1
    tokens = np.zeros(n)
    concurrent = np.zeros(n)
    for r in ok:
        t = r.send_time + request_ttft(r)
        token_times = [t]
        for gap in r.itl:
            t += gap
            token_times.append(t)
        for token_time in token_times:
            bucket = int(token_time - min_start)
            if 0 <= bucket < n:
                tokens[bucket] += 1
        first = int(r.send_time - min_start)
        last = int((r.send_time + request_latency(r)) - min_start)
        concurrent[first : last + 1] += 1
    return float(np.max(tokens)), int(np.max(concurrent))


def exact_peak_concurrency(intervals: Iterable[tuple[float, float]]) -> int:
    """Most intervals ``[start, end)`` open at one instant (sweep line).

    An interval ending exactly when another starts does not overlap it.
    """
    pairs = list(intervals)
    if not pairs:
        return 0
    times = np.array([t for pair in pairs for t in pair], dtype=float)
    deltas = np.array([d for _ in pairs for d in (1, -1)], dtype=np.int64)
    order = np.lexsort((deltas, times))  # by time, then ends (-1) before starts (+1)
    return int(np.max(np.cumsum(deltas[order])))


def _validate_slos(slos: Mapping[str, float] | None) -> dict[str, float] | None:
    if not slos:
        return None  # vLLM: `if goodput_config_dict:`
    out: dict[str, float] = {}
    for name, value in slos.items():
        if name not in GOODPUT_METRICS:
            raise ConfigError(f"unknown goodput SLO {name!r}.\n  fix: use {', '.join(GOODPUT_METRICS)} (in ms)")
        value = float(value)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"goodput SLO {name}:{value!r} must be a finite non-negative number of ms")
        out[name] = value
    return out


def _all_failed_message(total: int, reasons: Counter[str]) -> str:
    shown = "\n".join(f"    {count} x {reason}" for reason, count in reasons.most_common(10))
    more = f"\n    ... and {len(reasons) - 10} other reasons" if len(reasons) > 10 else ""
    return (
        f"all {total} measured requests failed, so there is no latency or throughput to report "
        f"(reporting zeros would be wrong). Reasons:\n{shown}{more}\n"
        "  fix: read the reasons above and the server log; check the model name, that prompt plus "
        "max_tokens fits the server's max model length, and the URL"
    )


def _positive_duration(duration: float) -> float:
    try:
        value = float(duration)
    except (TypeError, ValueError):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    return value


def _split(
    records: Iterable[RequestRecord],
) -> tuple[list[RequestRecord], list[RequestRecord], int, Counter[str]]:
    """(measured, succeeded, warmups left out, failure reasons); raises when none succeeded."""
    every = list(records)
    measured = [r for r in every if not r.warmup]
    warmup_excluded = len(every) - len(measured)
    ok = [r for r in measured if is_measured_success(r)]
    reasons = Counter(failure_reason(r) for r in measured if not is_measured_success(r))
    if not ok:
        if not measured:
            raise AllRequestsFailedError(
                f"no measured request to compute metrics from ({warmup_excluded} warmup records, 0 others).\n"
                "  fix: send at least one request after the warmup",
                {},
            )
        raise AllRequestsFailedError(_all_failed_message(len(measured), reasons), dict(reasons))
    return measured, ok, warmup_excluded, reasons


@dataclass
class _Series:
    """vLLM's per-request series, in calculate_metrics' order (seconds)."""

    ttfts: list[float]
    e2els: list[float]
    tpots: list[float]  # requests with more than one output token
    all_tpots: list[float]  # 0 for output_len <= 1: for goodput only
    itls: list[float]


def _vllm_series(ok: Sequence[RequestRecord], output_lens: Sequence[int]) -> _Series:
    series = _Series([], [], [], [], [])
    for r, n in zip(ok, output_lens):
        tpot = request_tpot(r, n)
        if tpot is not None:
            series.tpots.append(tpot)
        series.all_tpots.append(tpot or 0.0)
        series.itls += r.itl
        series.ttfts.append(request_ttft(r))
        series.e2els.append(request_latency(r))
    return series


def _good_requests(series: _Series, slos: Mapping[str, float]) -> int:
    """Requests within every SLO (vLLM's goodput: ttft, tpot and e2el, in ms)."""
    checks: list[tuple[list[float], float]] = []
    if "ttft" in slos:
        checks.append((series.ttfts, slos["ttft"] / MS_PER_S))
    if "tpot" in slos:
        checks.append((series.all_tpots, slos["tpot"] / MS_PER_S))
    if "e2el" in slos:
        checks.append((series.e2els, slos["e2el"] / MS_PER_S))
    return sum(1 for i in range(len(series.ttfts)) if all(slo >= values[i] for values, slo in checks))


def compute_metrics(
    records: Iterable[RequestRecord],
    duration: float,
    percentiles: Iterable[float] = DEFAULT_PERCENTILES,
    goodput_slos: Mapping[str, float] | None = None,
    target_request_rate: float | None = None,
    count_tokens: TokenCounter | None = None,
) -> BenchmarkMetrics:
    """All metrics of one run.

    ``duration`` is the benchmark duration in seconds (vLLM: from before the first
    request until every request has ended, failed ones included). Warmup records are
    counted in ``warmup_excluded`` and ignored otherwise. Latency statistics and token
    counts come from successful requests (:func:`is_measured_success`) only; failed
    requests are counted and grouped by reason. ``goodput_slos`` maps ttft/tpot/e2el
    to ms. ``count_tokens`` counts the output of a request without usage, as vLLM's
    tokenizer does (see :func:`output_len`).

    Raises :class:`AllRequestsFailedError` when no measured request succeeded, and
    ``ValueError`` for a duration that is not a positive number.
    """
    duration = _positive_duration(duration)
    pcts = validate_percentiles(percentiles)
    slos = _validate_slos(goodput_slos)
    measured, ok, warmup_excluded, reasons = _split(records)

    # calculate_metrics(), request by request
    output_lens = [output_len(r, count_tokens) for r in ok]
    total_input = sum(input_len(r) for r in ok)
    total_output = sum(output_lens)
    series = _vllm_series(ok, output_lens)
    request_goodput = None if slos is None else _good_requests(series, slos) / duration
    ttfts, e2els, tpots, itls = series.ttfts, series.e2els, series.tpots, series.itls

    max_tokens_per_s, max_concurrent = _vllm_peaks(ok)
    queue_times = [r.queue_time for r in ok]
    token_itls = [g for r in ok for g in per_token_itl(r)]
    stream_reasons = Counter(r.stream_error for r in ok if r.stream_error is not None)

    return BenchmarkMetrics(
        duration=duration,
        percentiles=pcts,
        completed=len(ok),
        failed=len(measured) - len(ok),
        failure_reasons=dict(reasons),
        completed_strict=len(ok) - sum(stream_reasons.values()),
        stream_errors=sum(stream_reasons.values()),
        stream_error_reasons=dict(stream_reasons),
        warmup_excluded=warmup_excluded,
        total_input_tokens=total_input,
        total_output_tokens=total_output,
        request_throughput=len(ok) / duration,
        request_goodput=request_goodput,
        goodput_slos=slos,
        output_throughput=total_output / duration,
        total_token_throughput=(total_input + total_output) / duration,
        max_output_tokens_per_s=max_tokens_per_s,
        max_concurrent_requests=max_concurrent,
        ttft=compute_stats(ttfts, pcts),
        tpot=compute_stats(tpots, pcts) if tpots else None,
        itl=compute_stats(itls, pcts) if itls else None,
        e2el=compute_stats(e2els, pcts),
        client_queue_time=compute_stats(queue_times, pcts),
        e2el_including_client_queue=compute_stats([request_latency(r) + r.queue_time for r in ok], pcts),
        per_token_itl=compute_stats(token_itls, pcts) if token_itls else None,
        send_lag=compute_stats([r.send_lag for r in measured], pcts),
        exact_peak_concurrent_requests=exact_peak_concurrency((r.send_time, r.chunk_times[-1]) for r in ok),
        target_request_rate=target_request_rate,
        scheduled_request_rate=_rate([r.scheduled_time for r in measured]),
        achieved_request_rate=_rate([r.send_time for r in measured]),
    )


def series_samples(
    records: Iterable[RequestRecord], series: str, count_tokens: TokenCounter | None = None
) -> list[float]:
    """The samples (seconds) that :func:`compute_metrics` summarizes for ``series``
    (``ttft``, ``tpot``, ``itl``, ``e2el`` or ``per_token_itl``), over the same
    requests and with the same output token counts. Raises ``ValueError`` for
    another name."""
    ok = [r for r in records if not r.warmup and is_measured_success(r)]
    if series == "ttft":
        return [request_ttft(r) for r in ok]
    if series == "e2el":
        return [request_latency(r) for r in ok]
    if series == "itl":
        return [gap for r in ok for gap in r.itl]
    if series == "per_token_itl":
        return [gap for r in ok for gap in per_token_itl(r)]
    if series == "tpot":
        tpots = (request_tpot(r, output_len(r, count_tokens)) for r in ok)
        return [t for t in tpots if t is not None]
    raise ValueError(f"no per-request samples for series {series!r}; use ttft, tpot, itl, e2el or per_token_itl")
