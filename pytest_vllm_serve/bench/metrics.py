"""Serving metrics with ``vllm bench serve``'s exact definitions, and a few beside them.

Pure functions over :class:`~pytest_vllm_serve.bench.records.RequestRecord` lists: no I/O,
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

import difflib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.errors import ConfigError, VllmServeError

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)
GOODPUT_METRICS: tuple[str, ...] = ("ttft", "tpot", "e2el")  # vLLM's VALID_NAMES
MS_PER_S = 1000  # vLLM's MILLISECONDS_TO_SECONDS_CONVERSION

#: Latency series reported as mean_/median_/std_/pNN_<series>_ms. The first six are
#: vLLM's own names; the last two are this plugin's additions.
VLLM_SERIES: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el", "client_queue_time", "e2el_including_client_queue")
EXTRA_SERIES: tuple[str, ...] = ("per_token_itl", "send_lag")
SERIES: tuple[str, ...] = VLLM_SERIES + EXTRA_SERIES

#: Counts the tokens of a text, without special tokens: vLLM's
#: ``len(tokenizer(text, add_special_tokens=False).input_ids)``.
TokenCounter = Callable[[str], int]


class AllRequestsFailedError(VllmServeError):
    """No measured request succeeded, so there is no latency or throughput to report.

    ``failure_reasons`` maps each reason to how many requests failed with it.
    """

    def __init__(self, message: str, failure_reasons: Mapping[str, int]):
        super().__init__(message)
        self.failure_reasons = dict(failure_reasons)


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stats:
    """Summary of one series, in the series' own unit (seconds for latencies).

    ``std`` is the population standard deviation (``np.std``); percentiles use
    numpy's default linear interpolation, exactly as ``vllm bench serve``.
    """

    count: int
    mean: float
    median: float
    std: float
    percentiles: dict[float, float]  # percentile (0-100) -> value


def percentile_label(p: float) -> str:
    """How vLLM names a percentile in result keys: 99.0 -> "99", 99.9 -> "99.9"."""
    return str(int(p)) if int(p) == p else str(p)


def validate_percentiles(percentiles: Iterable[float]) -> tuple[float, ...]:
    """Percentiles as floats, each finite and within [0, 100], duplicates dropped."""
    out: list[float] = []
    for p in percentiles:
        try:
            value = float(p)
        except (TypeError, ValueError):
            raise ConfigError(
                f"percentile {p!r} is not a number.\n  fix: give numbers from 0 to 100, e.g. 50,90,99"
            ) from None
        if not (math.isfinite(value) and 0 <= value <= 100):
            raise ConfigError(f"percentile {p!r} is outside 0..100.\n  fix: give numbers from 0 to 100, e.g. 50,90,99")
        if value not in out:
            out.append(value)
    return tuple(out)


def compute_stats(values: Sequence[float], percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> Stats:
    """Mean, median, population std and percentiles of ``values`` (at least one)."""
    if len(values) == 0:
        raise ValueError("compute_stats needs at least one value")
    return Stats(
        count=len(values),
        mean=float(np.mean(values)),
        median=float(np.median(values)),
        std=float(np.std(values)),
        percentiles={p: float(np.percentile(values, p)) for p in validate_percentiles(percentiles)},
    )


# --------------------------------------------------------------------------- per record


def is_measured_success(record: RequestRecord) -> bool:
    """Succeeded as ``vllm bench serve`` counts it: no failure, and at least one chunk
    with a choice streamed.

    vLLM marks a stream without such a chunk as failed ("Never received a valid chunk
    to calculate TTFT"). It does count a stream that carried an ``{"error": ...}``
    event, or ended without ``[DONE]``, as completed; so does this function (the
    record's ``stream_error`` holds that, for :func:`is_strict_success`).
    """
    return record.success and bool(record.chunk_times)


def is_strict_success(record: RequestRecord) -> bool:
    """Succeeded as vLLM counts it, and its stream carried no error event and closed
    with ``[DONE]``."""
    return is_measured_success(record) and record.stream_error is None


def input_len(record: RequestRecord) -> int:
    """Prompt tokens: the server's usage when it reported them, else the workload's length.

    vLLM overwrites ``prompt_len`` with ``usage.prompt_tokens`` when that is not None.
    """
    return record.prompt_tokens if record.prompt_tokens is not None else record.prompt_len


def output_len(record: RequestRecord, count_tokens: TokenCounter | None = None) -> int:
    """Output tokens of a successful request, as vLLM counts them.

    vLLM takes ``usage.completion_tokens`` and, when that is missing or 0, tokenizes
    the generated text (``count_tokens`` here). Without a tokenizer vLLM writes 1;
    this function counts the tokens of the chunks instead (exact with ``token_ids``,
    one per text chunk without them).
    """
    if record.completion_tokens:
        return record.completion_tokens
    if count_tokens is not None:
        return count_tokens(record.generated_text)
    return sum(record.chunk_tokens)


def _ttft(record: RequestRecord) -> float:
    """``record.ttft`` of a request with a token chunk (every measured success has one)."""
    ttft = record.ttft
    if ttft is None:  # the TypeError that arithmetic on None would raise, with a reason
        raise TypeError(f"request {record.index} has no token chunk, so no TTFT")
    return ttft


def _latency(record: RequestRecord) -> float:
    """``record.latency`` of a request with a token chunk (every measured success has one)."""
    latency = record.latency
    if latency is None:  # the TypeError that arithmetic on None would raise, with a reason
        raise TypeError(f"request {record.index} has no token chunk, so no E2EL")
    return latency


def request_tpot(record: RequestRecord, n: int) -> float | None:
    """vLLM's TPOT of one successful request with ``n`` output tokens: the time after
    the first token chunk per further token; None when ``n <= 1``."""
    if n <= 1:
        return None
    return (_latency(record) - _ttft(record)) / (n - 1)


def per_token_itl(record: RequestRecord) -> list[float]:
    """Inter-token latency per token: one sample per token after the first token chunk.

    A chunk carrying ``k`` tokens that arrived ``g`` seconds after the previous
    token-carrying chunk contributes ``k`` samples of ``g / k``. Chunks with no token
    (a chat role chunk, an empty text) neither contribute nor split a gap; the tokens
    of the first token-carrying chunk have no gap (they belong to TTFT).
    """
    times, tokens = record.chunk_times, record.chunk_tokens
    if len(times) != len(tokens):
        raise ValueError(
            f"request {record.index}: {len(times)} chunk times but {len(tokens)} chunk token counts; "
            "the load generator must record one count per chunk"
        )
    out: list[float] = []
    previous: float | None = None
    for t, k in zip(times, tokens):
        if k <= 0:
            continue
        if previous is not None:
            out.extend([(t - previous) / k] * k)
        previous = t
    return out


def failure_reason(record: RequestRecord) -> str:
    """A short reason to group failures by: the error's first line (a traceback's last)."""
    if record.success:
        return "no chunk with a choice arrived"
    lines = [line.strip() for line in (record.error or "").splitlines() if line.strip()]
    if not lines:
        return "unknown error (empty message)"
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= 200 else line[:197] + "..."


# --------------------------------------------------------------------------- the result


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
    max_end = max(r.send_time + _latency(r) for r in ok)
    n = int(np.ceil(max_end - min_start)) + 1
    tokens = np.zeros(n)
    concurrent = np.zeros(n)
    for r in ok:
        t = r.send_time + _ttft(r)
        token_times = [t]
        for gap in r.itl:
            t += gap
            token_times.append(t)
        for token_time in token_times:
            bucket = int(token_time - min_start)
            if 0 <= bucket < n:
                tokens[bucket] += 1
        first = int(r.send_time - min_start)
        last = int((r.send_time + _latency(r)) - min_start)
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
    try:
        duration = float(duration)
    except (TypeError, ValueError):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}") from None
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    pcts = validate_percentiles(percentiles)
    slos = _validate_slos(goodput_slos)

    records = list(records)
    measured = [r for r in records if not r.warmup]
    warmup_excluded = len(records) - len(measured)
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

    # calculate_metrics(), request by request
    output_lens = [output_len(r, count_tokens) for r in ok]
    total_input = sum(input_len(r) for r in ok)
    total_output = sum(output_lens)
    ttfts: list[float] = []
    e2els: list[float] = []
    tpots: list[float] = []
    all_tpots: list[float] = []  # 0 for output_len <= 1, for goodput only
    itls: list[float] = []
    for r, n in zip(ok, output_lens):
        ttft, latency = _ttft(r), _latency(r)
        tpot = request_tpot(r, n)
        if tpot is not None:
            tpots.append(tpot)
        all_tpots.append(tpot or 0.0)
        itls += r.itl
        ttfts.append(ttft)
        e2els.append(latency)

    request_goodput: float | None = None
    if slos is not None:
        checks: list[tuple[list[float], float]] = []
        if "ttft" in slos:
            checks.append((ttfts, slos["ttft"] / MS_PER_S))
        if "tpot" in slos:
            checks.append((all_tpots, slos["tpot"] / MS_PER_S))
        if "e2el" in slos:
            checks.append((e2els, slos["e2el"] / MS_PER_S))
        good = sum(1 for i in range(len(ok)) if all(slo >= values[i] for values, slo in checks))
        request_goodput = good / duration

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
        e2el_including_client_queue=compute_stats([_latency(r) + r.queue_time for r in ok], pcts),
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
        return [_ttft(r) for r in ok]
    if series == "e2el":
        return [_latency(r) for r in ok]
    if series == "itl":
        return [gap for r in ok for gap in r.itl]
    if series == "per_token_itl":
        return [gap for r in ok for gap in per_token_itl(r)]
    if series == "tpot":
        tpots = (request_tpot(r, output_len(r, count_tokens)) for r in ok)
        return [t for t in tpots if t is not None]
    raise ValueError(f"no per-request samples for series {series!r}; use ttft, tpot, itl, e2el or per_token_itl")


# --------------------------------------------------------------------------- names


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

_STAT_PREFIXES = ("mean", "median", "std")


def series_metric_names(series: str, percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> list[str]:
    """mean_/median_/std_/pNN_<series>_ms, in vLLM's order."""
    names = [f"{prefix}_{series}_ms" for prefix in _STAT_PREFIXES]
    return names + [f"p{percentile_label(p)}_{series}_ms" for p in validate_percentiles(percentiles)]


#: Every metric name with the default percentiles, and which way is better. Any other
#: percentile works the same way (``p99.9_ttft_ms``); see :func:`metric_direction`.
METRIC_DIRECTIONS: dict[str, Direction] = {
    **SCALAR_DIRECTIONS,
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
        "(e.g. p99_ttft_ms, p99.9_e2el_ms)"
    )


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
            values.update(_stats_items(series, stats))
    return values


def _stats_items(series: str, stats: Stats) -> dict[str, float]:
    # vLLM: np.mean(values) * 1000, and so on; the same float arithmetic
    items = {
        f"mean_{series}_ms": stats.mean * MS_PER_S,
        f"median_{series}_ms": stats.median * MS_PER_S,
        f"std_{series}_ms": stats.std * MS_PER_S,
    }
    for p, value in stats.percentiles.items():
        items[f"p{percentile_label(p)}_{series}_ms"] = value * MS_PER_S
    return items


def _none_items(series: str, percentiles: Sequence[float], fill: float | None) -> dict[str, float | None]:
    return {name: fill for name in series_metric_names(series, percentiles)}


# --------------------------------------------------------------------------- vLLM's result file

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
        result.update(_stats_items(series, stats) if stats else _none_items(series, metrics.percentiles, 0.0))

    # this plugin's keys, beside vLLM's
    for series in EXTRA_SERIES:
        stats = getattr(metrics, series)
        result.update(_stats_items(series, stats) if stats else _none_items(series, metrics.percentiles, None))
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


# --------------------------------------------------------------------------- goodput spec

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def parse_number(text: str) -> float | None:
    """A finite decimal number (``10``, ``2.5``, ``1e3``), or None."""
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def format_number(value: float) -> str:
    """Shortest text that parses back to ``value``: 500.0 -> "500", 0.1 -> "0.1"."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def parse_goodput(spec: str) -> dict[str, float]:
    """``"ttft:500,tpot:50,e2el:2000"`` -> ``{"ttft": 500.0, ...}`` (milliseconds).

    The same SLOs as ``vllm bench serve --goodput ttft:500 tpot:50``, comma-separated.
    Only ttft, tpot and e2el; each a non-negative number, each at most once.
    Raises ConfigError naming the problem and the fix.
    """
    fix = '  fix: write KEY:MS pairs separated by commas, e.g. --vllm-goodput "ttft:500,tpot:50,e2el:2000"'
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"the goodput SLOs {spec!r} are empty.\n{fix}")
    slos: dict[str, float] = {}
    for item in spec.split(","):
        name, colon, value_text = (part.strip() for part in item.partition(":"))
        if not colon or not name or not value_text:
            raise ConfigError(f"goodput SLO {item.strip()!r} in {spec!r} is not KEY:MS.\n{fix}")
        if name not in GOODPUT_METRICS:
            raise ConfigError(
                f"unknown goodput metric {name!r} in {spec!r}; goodput SLOs can use "
                f"{', '.join(GOODPUT_METRICS)} (as vllm bench serve).\n{fix}"
            )
        if name in slos:
            raise ConfigError(f"goodput metric {name!r} is given twice in {spec!r}.\n{fix}")
        value = parse_number(value_text)
        if value is None or value < 0:
            raise ConfigError(
                f"goodput SLO {name}:{value_text} in {spec!r} is not a non-negative number of milliseconds.\n{fix}"
            )
        slos[name] = abs(value)  # -0 -> 0
    return slos


def format_goodput(slos: Mapping[str, float]) -> str:
    """The spec :func:`parse_goodput` reads back into ``slos``."""
    return ",".join(f"{name}:{format_number(value)}" for name, value in slos.items())
