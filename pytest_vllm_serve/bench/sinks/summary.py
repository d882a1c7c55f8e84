"""The end-of-session table of benchmark points."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_vllm_serve.bench.sinks.results import PointRecord

COLUMNS = (
    ("ok", "completed", "{:.0f}"),
    ("fail", "failed", "{:.0f}"),
    ("req/s", "request_throughput", "{:.2f}"),
    ("tgt req/s", "target_request_rate", "{:.2f}"),
    ("ach req/s", "achieved_request_rate", "{:.2f}"),
    ("out tok/s", "output_throughput", "{:.1f}"),
    ("TTFT p50", "median_ttft_ms", "{:.1f}"),
    ("TTFT p99", "p99_ttft_ms", "{:.1f}"),
    ("TPOT p50", "median_tpot_ms", "{:.2f}"),
    ("TPOT p99", "p99_tpot_ms", "{:.2f}"),
    ("ITL p50", "median_itl_ms", "{:.2f}"),
    ("ITL p99", "p99_itl_ms", "{:.2f}"),
    ("E2EL p99", "p99_e2el_ms", "{:.0f}"),
)
#: The server's own figures (its /metrics), as columns only when a point has them.
SERVER_COLUMNS = (
    ("srv TTFT", "server_ttft_mean_ms", "{:.1f}"),
    ("srv wait max", "server_waiting_max", "{:.0f}"),
    ("srv KV max", "server_kv_cache_usage_max", "{:.2f}"),
)
#: The GPUs' figures (NVML), as columns only when a point has them.
GPU_COLUMNS = (
    ("GPU util", "server_gpu_util_pct_mean", "{:.0f}"),
    ("GPU W", "server_gpu_power_w_mean", "{:.0f}"),
    ("tok/J", "server_output_tokens_per_joule", "{:.2f}"),
)


def _cell(metrics: dict[str, float], key: str, fmt: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "-"
    try:
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return str(value)


PARTIAL_MARK = " (partial)"
UNSTABLE_MARK = " (unstable)"
#: With --vllm-repeats, these columns get a "±" column beside them: half the 95 % interval.
SPREAD = ("request_throughput", "output_throughput", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "median_itl_ms")


def _spread(point: PointRecord, key: str, fmt: str) -> str:
    interval = ((point.repeats or {}).get("metrics") or {}).get(key)
    if not interval or interval.get("ci_low") is None or interval.get("ci_high") is None:
        return "-"
    return "±" + fmt.format((interval["ci_high"] - interval["ci_low"]) / 2)


def _columns(repeated: bool, server: bool, gpu: bool = False) -> list[tuple[str, str, str, bool]]:
    """(title, key, format, is a ± column) for each column after the point's name."""
    columns = []
    for title, key, fmt in COLUMNS + (SERVER_COLUMNS if server else ()) + (GPU_COLUMNS if gpu else ()):
        columns.append((title, key, fmt, False))
        if repeated and key in SPREAD:
            columns.append(("±", key, fmt, True))
    return columns


def _name(point: PointRecord) -> str:
    return (
        point.id.split("::")[-1] + (PARTIAL_MARK if point.partial else "") + (UNSTABLE_MARK if point.unstable else "")
    )


def points_table(points: Iterable[PointRecord]) -> list[str]:
    """Rows of a fixed-width table; latencies in ms. With repeats: the medians, the number of
    repeats and "±" columns (half the confidence interval). A point cut short or unstable is
    marked, and a line under the table says why."""
    points = list(points)
    repeated = any(point.repeats for point in points)
    gpu = any("server_gpu_power_w_mean" in point.server_figures() for point in points)
    columns = _columns(repeated, any(point.server_figures() for point in points), gpu)
    rows = [["point", *(["n"] if repeated else []), *(title for title, _, _, _ in columns)]]
    for point in points:
        cells = [
            _spread(point, key, fmt) if spread else _cell({**point.metrics, **point.server_figures()}, key, fmt)
            for _, key, fmt, spread in columns
        ]
        count = [str((point.repeats or {}).get("n", 1))] if repeated else []
        rows.append([_name(point), *count, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for point in points:
        if point.partial:
            lines.append(f"partial: {point.id.split('::')[-1]} was cut short: {point.partial}")
        for reason in point.unstable:
            lines.append(f"unstable: {point.id.split('::')[-1]}: {reason}")
    return lines
