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


def _cell(metrics: dict[str, float], key: str, fmt: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "-"
    try:
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return str(value)


PARTIAL_MARK = " (partial)"


def points_table(points: Iterable[PointRecord]) -> list[str]:
    """Rows of a fixed-width table; latencies in ms. A point cut short is marked, and a line
    under the table says why."""
    points = list(points)
    rows = [["point", *(title for title, _, _ in COLUMNS)]]
    for point in points:
        name = point.id.split("::")[-1] + (PARTIAL_MARK if point.partial else "")
        rows.append([name, *(_cell(point.metrics, key, fmt) for _, key, fmt in COLUMNS)])
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
    return lines
