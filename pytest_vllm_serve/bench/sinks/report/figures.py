"""The report's curves as Plotly figures: plain dicts of Plotly's JSON schema, pure functions
of the points. The page hands them to plotly.js as they are (docs/report.md).

A suite gets one figure per latency (p50 and p99 against the swept variable, with the
95 % interval of a repeated point as error bars and an SLO as a horizontal line) and one
for the throughputs. Several runs (a comparison) overlay: one line style per run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_vllm_serve.bench.sinks.plots import SWEPT, split_series, swept_value
from pytest_vllm_serve.bench.sinks.results import PointRecord

#: (title, series, SLO name in --vllm-goodput): the latency figures of a suite.
LATENCIES = (
    ("TTFT (ms)", "ttft", "ttft"),
    ("TPOT (ms)", "tpot", "tpot"),
    ("ITL (ms)", "itl", None),
    ("E2EL (ms)", "e2el", "e2el"),
)
#: (label, metric) on the throughput figure.
THROUGHPUTS = (
    ("output tok/s", "output_throughput"),
    ("total tok/s", "total_token_throughput"),
)
#: One line style per run of a comparison: the first (old) dotted, the second (new) solid.
#: A single run draws p50 solid and p99 dashed.
RUN_DASH = ("dot", "solid", "dash", "dashdot")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class SuiteFigures:
    """One suite's figures: (title, Plotly figure) pairs."""

    suite: str
    swept: str
    figures: list[tuple[str, dict[str, Any]]]


def x_positions(values: Sequence[float]) -> dict[float, float]:
    """Where each swept value sits on a log axis; inf one doubling past the largest finite one."""
    finite = [v for v in values if math.isfinite(v) and v > 0]
    top = max(finite) * 2 if finite else 1.0
    return {v: (v if math.isfinite(v) and v > 0 else top) for v in values}


def _label(value: float) -> str:
    return "inf" if not math.isfinite(value) else f"{value:g}"


def _interval(point: PointRecord, key: str) -> tuple[float, float] | None:
    """(below, above) the value: the repeated point's 95 % interval, or None."""
    interval = ((point.repeats or {}).get("metrics") or {}).get(key) or {}
    value, low, high = point.metrics.get(key), interval.get("ci_low"), interval.get("ci_high")
    if value is None or low is None or high is None:
        return None
    return max(value - low, 0.0), max(high - value, 0.0)


def _trace(
    points: list[PointRecord], xs: list[float], key: str, name: str, colour: str, dash: str, symbol: str
) -> dict[str, Any] | None:
    ys = [point.metrics.get(key) for point in points]
    if all(y is None for y in ys):
        return None
    trace: dict[str, Any] = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": xs,
        "y": [y if isinstance(y, (int, float)) and math.isfinite(y) else None for y in ys],
        "text": [point.id.split("::")[-1] for point in points],
        "hovertemplate": "%{text}<br>%{y:.4g}<extra>" + name + "</extra>",
        "line": {"color": colour, "dash": dash},
        "marker": {"color": colour, "symbol": symbol, "size": 7},
    }
    bars = [_interval(point, key) for point in points]
    if any(bars):
        trace["error_y"] = {
            "type": "data",
            "symmetric": False,
            "array": [b[1] if b else 0 for b in bars],
            "arrayminus": [b[0] if b else 0 for b in bars],
            "color": colour,
        }
    return trace


def _marks(points: list[PointRecord], xs: list[float], key: str) -> list[dict[str, Any]]:
    """Rings around partial (red) and unstable (orange) points."""
    out = []
    for label, colour, pick in (
        ("partial (server died or stalled)", "red", lambda p: p.partial),
        ("unstable (too short, or repeats disagree)", "orange", lambda p: p.unstable),
    ):
        at = [(x, p.metrics.get(key)) for x, p in zip(xs, points) if pick(p) and p.metrics.get(key) is not None]
        if at:
            out.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": label,
                    "x": [x for x, _ in at],
                    "y": [y for _, y in at],
                    "marker": {"symbol": "circle-open", "size": 16, "color": colour, "line": {"width": 2}},
                    "hoverinfo": "skip",
                }
            )
    return out


def _layout(title: str, swept: str, ticks: Mapping[float, float], y_title: str) -> dict[str, Any]:
    order = sorted(ticks.items(), key=lambda item: item[1])
    return {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {
            "title": {"text": swept},
            "type": "log",
            "tickvals": [x for _, x in order],
            "ticktext": [_label(v) for v, _ in order],
        },
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "height": 320,
        "legend": {"font": {"size": 10}},
        "hovermode": "closest",
    }


def _slo_line(value: float, colour: str = "#555") -> dict[str, Any]:
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "y0": value,
        "y1": value,
        "line": {"color": colour, "dash": "dash", "width": 1},
    }


def suite_figures(
    runs: Sequence[tuple[str, Sequence[PointRecord]]], slos: Mapping[str, float] | None = None
) -> list[SuiteFigures]:
    """Every swept suite's figures. ``runs`` are (label, points) pairs: one run for a session's
    page, two (old, new) for a comparison, drawn over each other. ``slos`` are --vllm-goodput's
    thresholds in ms, drawn as lines on their latency figure."""
    by_suite: dict[str, list[tuple[int, str, PointRecord]]] = defaultdict(list)
    for n, (label, points) in enumerate(runs):
        for point in points:
            if point.suite in SWEPT and point.metrics.get("completed") and swept_value(point, SWEPT[point.suite]):
                by_suite[point.suite].append((n, label, point))
    out = []
    for suite, members in sorted(by_suite.items()):
        figures = _suite(suite, members, len(runs), slos or {})
        if figures:
            out.append(SuiteFigures(suite, SWEPT[suite], figures))
    return out


def _suite(
    suite: str, members: list[tuple[int, str, PointRecord]], runs: int, slos: Mapping[str, float]
) -> list[tuple[str, dict[str, Any]]]:
    key = SWEPT[suite]
    values = sorted({v for _, _, p in members if (v := swept_value(p, key)) is not None})
    if len(values) < 2:
        return []
    where = x_positions(values)
    lines = []  # (run index, run label, line key, points sorted by x, their x positions)
    for n in range(runs):
        of_run = [p for m, _, p in members if m == n]
        label = next((lab for m, lab, _ in members if m == n), "")
        for line, points in sorted(split_series(of_run, key).items()):
            points = sorted(points, key=lambda p: swept_value(p, key) or 0.0)
            lines.append((n, label, line, points, [where[swept_value(p, key) or 0.0] for p in points]))
    figures = []
    for title, series, slo in LATENCIES:
        traces: list[dict[str, Any]] = []
        for colour_n, (n, label, line, points, xs) in enumerate(lines):
            for stat, symbol in (("median", "circle"), ("p99", "square")):
                name = _name("p50" if stat == "median" else stat, line, label if runs > 1 else "")
                colour = COLOURS[(colour_n * 2 + (stat == "p99")) % len(COLOURS)] if runs == 1 else COLOURS[n]
                dash = ("solid" if stat == "median" else "dash") if runs == 1 else RUN_DASH[n % 4]
                trace = _trace(points, xs, f"{stat}_{series}_ms", name, colour, dash, symbol)
                if trace is not None:
                    traces.append(trace)
            traces += _marks(points, xs, f"median_{series}_ms")
        if traces:
            layout = _layout(f"{suite}: {title}", key, where, title)
            if slo and slo in slos:
                layout["shapes"] = [_slo_line(slos[slo])]
                layout["annotations"] = [_slo_note(f"SLO {slos[slo]:g} ms", slos[slo])]
            figures.append((title, {"data": traces, "layout": layout}))
    traces = []
    for colour_n, (n, label, line, points, xs) in enumerate(lines):
        for i, (name, metric) in enumerate(THROUGHPUTS):
            colour = COLOURS[(colour_n * 2 + i) % len(COLOURS)] if runs == 1 else COLOURS[n]
            dash = ("solid", "dash")[i] if runs == 1 else RUN_DASH[n % 4]
            trace = _trace(points, xs, metric, _name(name, line, label if runs > 1 else ""), colour,
                           dash, ("circle", "square")[i])  # fmt: skip
            if trace is not None:
                traces.append(trace)
    if traces:
        figures.append(
            ("throughput (tok/s)", {"data": traces, "layout": _layout(f"{suite}: throughput", key, where, "tok/s")})
        )
    return figures


def _name(stat: str, line: tuple[tuple[str, str], ...], run: str) -> str:
    parts = ", ".join(f"{name}={value}" for name, value in line)
    return (f"{run}: " if run else "") + stat + (f" ({parts})" if parts else "")


def _slo_note(text: str, y: float) -> dict[str, Any]:
    return {"xref": "paper", "x": 1, "y": y, "text": text, "showarrow": False, "xanchor": "right", "yanchor": "bottom",
            "font": {"size": 10, "color": "#555"}}  # fmt: skip


def search_figures(searches: Sequence[Mapping[str, Any]]) -> list[SuiteFigures]:
    """Each SLO search (bench/sinks/slo_search.py): per bound, the probes' metric against the
    searched variable, met and missed apart, with the bound and the answer as lines."""
    out = []
    for doc in searches:
        probes = sorted(
            (p for p in doc.get("probes") or [] if isinstance(p.get("value"), (int, float))), key=lambda p: p["value"]
        )
        if not probes:
            continue
        variable, name = str(doc.get("variable")), str(doc.get("id")).split("::")[-1]
        where = x_positions([float(p["value"]) for p in probes])
        figures = []
        for metric, bound in (doc.get("slo") or {}).items():
            traces = []
            for passed, symbol, colour, label in (
                (True, "circle", COLOURS[2], "met"),
                (False, "x", COLOURS[1], "missed"),
            ):
                chosen = [p for p in probes if bool(p.get("passed")) is passed]
                if chosen:
                    traces.append(_probe_trace(chosen, where, metric, label, colour, symbol))
            layout = _layout(f"{name}: {metric}", variable, where, metric)
            threshold = _number(str(bound)[2:])
            if threshold is not None:
                layout["shapes"] = [_slo_line(threshold, "#ff7f0e")]
                layout["annotations"] = [_slo_note(f"SLO {bound}", threshold)]
            best = doc.get("best")
            if isinstance(best, (int, float)) and best in where:
                x = where[best]
                line = {"color": COLOURS[2], "dash": "dot", "width": 1}
                vertical = {"type": "line", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1, "line": line}
                layout.setdefault("shapes", []).append(vertical)
            figures.append((metric, {"data": traces, "layout": layout}))
        if figures:
            out.append(SuiteFigures(f"SLO search {name}", variable, figures))
    return out


def _probe_trace(
    probes: list[Mapping[str, Any]], where: Mapping[float, float], metric: str, label: str, colour: str, symbol: str
) -> dict[str, Any]:
    ys = [(p.get("metrics") or {}).get(metric) for p in probes]
    return {
        "type": "scatter",
        "mode": "markers",
        "name": label,
        "x": [where[float(p["value"])] for p in probes],
        "y": [y if isinstance(y, (int, float)) and math.isfinite(y) else None for y in ys],
        "text": [f"{p['value']:g}" for p in probes],
        "hovertemplate": "%{text}: %{y:.4g}<extra>" + label + "</extra>",
        "marker": {"color": colour, "symbol": symbol, "size": 9},
    }


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
