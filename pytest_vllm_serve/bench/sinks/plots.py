"""Per-suite plots: latency percentiles and throughput against the swept variable."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore

#: The variable each suite sweeps, read from a point's params.
SWEPT = {
    "rate": "request_rate",
    "concurrency": "max_concurrency",
    "input": "input_len",
    "output": "output_len",
    "prefill": "input_len",
    "decode": "output_len",
    "longctx": "input_len",
}

PANELS = (
    ("TTFT (ms)", "ttft"),
    ("TPOT (ms)", "tpot"),
    ("E2EL (ms)", "e2el"),
)


def swept_value(point: PointRecord, key: str) -> float | None:
    """The point's value of the swept variable ``key`` as a number (inf included), or None."""
    value = point.params.get(key)
    if value is None:
        return None
    try:
        return float(value)  # "inf" and math.inf become inf
    except (TypeError, ValueError):
        return None


def _positions(values: list[float]) -> tuple[list[float], list[str]]:
    """x positions and tick labels; inf is drawn one doubling past the largest finite value."""
    finite = [v for v in values if math.isfinite(v)]
    top = max(finite) * 2 if finite else 1.0
    xs = [v if math.isfinite(v) else top for v in values]
    labels = ["inf" if not math.isfinite(v) else f"{v:g}" for v in values]
    return xs, labels


def model_label(model: str) -> str:
    """A model as a plot title shows it: a local directory by its name, not its full path."""
    return Path(model).name if model.startswith(("/", "./", "../", "~")) else model


def split_series(points: list[PointRecord], key: str) -> dict[tuple[tuple[str, str], ...], list[PointRecord]]:
    """Points of one suite, one line each: points measured at the same swept value with
    different other params (a repeat, another client setting) belong to different lines.

    The line's key holds the params that tell them apart, as (name, value) pairs; it is
    empty when the suite is a single line."""
    at: dict[float, list[PointRecord]] = defaultdict(list)
    for point in points:
        at[swept_value(point, key)].append(point)
    apart: set[str] = set()
    for group in at.values():
        names = {name for point in group for name in point.params} - {key}
        apart |= {name for name in names if len({repr(point.params.get(name)) for point in group}) > 1}
    lines: dict[tuple[tuple[str, str], ...], list[PointRecord]] = defaultdict(list)
    for point in points:
        lines[tuple((name, str(point.params.get(name))) for name in sorted(apart))].append(point)
    return dict(lines)


def _label(stat: str, line: tuple[tuple[str, str], ...]) -> str:
    return stat + (" (" + ", ".join(f"{name}={value}" for name, value in line) + ")" if line else "")


PARTIAL_LABEL = "partial (cut short: server died or stalled)"
UNSTABLE_LABEL = "unstable (too short, or repeats disagree)"


def _mark(axes, members: list[PointRecord], xs: list[float], which, label: str, colour: str) -> None:
    """A hollow ring around each point ``which`` picks, with one legend entry per panel."""
    picked = [(x, p) for x, p in zip(xs, members) if which(p)]
    if not picked:
        return
    for axis, (_, series) in zip(axes, (*PANELS, ("", "output_throughput"))):
        key = f"median_{series}_ms" if series != "output_throughput" else series
        at = [(x, p.metrics.get(key)) for x, p in picked if p.metrics.get(key) is not None]
        if at:
            axis.plot(
                [x for x, _ in at],
                [y for _, y in at],
                "o",
                markersize=13 if colour == "red" else 17,
                markerfacecolor="none",
                markeredgecolor=colour,
                markeredgewidth=1.5,
                linestyle="none",
                label=label,
            )


def _mark_partial(axes, members: list[PointRecord], xs: list[float]) -> None:
    _mark(axes, members, xs, lambda p: p.partial, PARTIAL_LABEL, "red")


def _mark_unstable(axes, members: list[PointRecord], xs: list[float]) -> None:
    _mark(axes, members, xs, lambda p: p.unstable, UNSTABLE_LABEL, "orange")


def _error_bars(axis, members: list[PointRecord], xs: list[float], key: str, colour: dict[str, str]) -> None:
    """The 95 % interval of each repeated point's median, as an error bar."""
    at = []
    for x, point in zip(xs, members):
        interval = ((point.repeats or {}).get("metrics") or {}).get(key) or {}
        y, low, high = point.metrics.get(key), interval.get("ci_low"), interval.get("ci_high")
        if y is not None and low is not None and high is not None:
            at.append((x, y, max(y - low, 0.0), max(high - y, 0.0)))
    if at:
        axis.errorbar(
            [a[0] for a in at],
            [a[1] for a in at],
            yerr=[[a[2] for a in at], [a[3] for a in at]],
            fmt="none",
            capsize=3,
            **({"ecolor": colour["color"]} if colour else {}),
        )


def draw_suite_plots(store: ResultsStore) -> list[Path]:
    """One PNG per suite with at least two points on a numeric axis. Returns the files."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    by_suite: dict[str, list[PointRecord]] = defaultdict(list)
    for point in store.load_points():
        if point.suite in SWEPT and point.metrics.get("completed"):
            by_suite[point.suite].append(point)
    written = []
    for suite, points in sorted(by_suite.items()):
        path = _draw_suite(plt, store, suite, points)
        if path is not None:
            written.append(path)
    return written


def _draw_suite(plt, store: ResultsStore, suite: str, points: list[PointRecord]) -> Path | None:
    """The suite's PNG: a panel per latency and one for throughput, a line per series.
    None when fewer than two points have a numeric swept value."""
    key = SWEPT[suite]
    finite = sorted((p for p in points if swept_value(p, key) is not None), key=lambda p: swept_value(p, key))
    if len(finite) < 2:
        return None
    values = sorted({swept_value(p, key) for p in finite})
    xs_all, labels = _positions(values)
    where = dict(zip(values, xs_all))
    lines = split_series(finite, key)
    fig, axes = plt.subplots(1, len(PANELS) + 1, figsize=(18, 4.2))
    for n, (line, members) in enumerate(sorted(lines.items())):
        xs = [where[swept_value(p, key)] for p in members]
        colour = {"color": f"C{n % 10}"} if len(lines) > 1 else {}  # one line: p50 and p99 in the default colours
        _draw_line(axes, line, members, xs, colour)
    _finish_axes(axes, key, xs_all, labels)
    fig.suptitle(f"{suite} sweep ({model_label(str(finite[0].server.get('model', '')))})")
    fig.tight_layout()
    path = store.root / "plots" / f"{suite}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _draw_line(
    axes, line: tuple[tuple[str, str], ...], members: list[PointRecord], xs: list[float], colour: dict[str, str]
) -> None:
    """One series on every panel: p50 and p99 of each latency, the partial rings, throughput."""
    for axis, (_title, series) in zip(axes, PANELS):
        for stat, style in (("median", "o-"), ("p99", "s--")):
            ys = [p.metrics.get(f"{stat}_{series}_ms") for p in members]
            if any(y is not None for y in ys):
                name = "p50" if stat == "median" else stat
                axis.plot(
                    xs,
                    [y if y is not None else float("nan") for y in ys],
                    style,
                    label=_label(name, line),
                    **colour,
                )
                _error_bars(axis, members, xs, f"{stat}_{series}_ms", colour)
    _mark_partial(axes, members, xs)
    _mark_unstable(axes, members, xs)
    throughput = axes[-1]
    throughput.plot(
        xs,
        [p.metrics.get("output_throughput") for p in members],
        "o-",
        label=_label("output tok/s", line),
        **colour,
    )
    _error_bars(throughput, members, xs, "output_throughput", colour)
    throughput.plot(
        xs,
        [p.metrics.get("total_token_throughput") for p in members],
        "s--",
        label=_label("total tok/s", line),
        **colour,
    )


def _finish_axes(axes, key: str, xs_all: list[float], labels: list[str]) -> None:
    """Titles, legends, grids and the log2 x axis with the swept values as ticks."""
    for axis, (title, _) in zip(axes, (*PANELS, ("throughput (tok/s)", ""))):
        axis.set_title(title)
        axis.set_xlabel(key)
        if axis.get_lines():
            handles, names = axis.get_legend_handles_labels()
            unique = dict(zip(names, handles))  # the partial ring once, however many lines
            axis.legend(list(unique.values()), list(unique), fontsize="small")
        axis.grid(alpha=0.3)
        axis.set_xscale("log", base=2)
        axis.set_xticks(xs_all, labels)
        axis.minorticks_off()
