"""Per-suite plots: latency percentiles and throughput against the swept variable."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from .results import PointRecord, ResultsStore

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


def _x(point: PointRecord, key: str) -> float | None:
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
        key = SWEPT[suite]
        finite = sorted((p for p in points if _x(p, key) is not None), key=lambda p: _x(p, key))
        if len(finite) < 2:
            continue
        xs, labels = _positions([_x(p, key) for p in finite])
        fig, axes = plt.subplots(1, len(PANELS) + 1, figsize=(18, 4.2))
        for axis, (title, series) in zip(axes, PANELS):
            for stat, style in (("median", "o-"), ("p99", "s--")):
                ys = [p.metrics.get(f"{stat}_{series}_ms") for p in finite]
                if any(y is not None for y in ys):
                    axis.plot(xs, [y if y is not None else float("nan") for y in ys], style, label=f"{stat if stat != 'median' else 'p50'}")
            axis.set_title(title)
            axis.set_xlabel(key)
            if axis.get_lines():
                axis.legend()
            axis.grid(alpha=0.3)
        throughput = axes[-1]
        throughput.plot(xs, [p.metrics.get("output_throughput") for p in finite], "o-", label="output tok/s")
        throughput.plot(xs, [p.metrics.get("total_token_throughput") for p in finite], "s--", label="total tok/s")
        throughput.set_title("throughput (tok/s)")
        throughput.set_xlabel(key)
        throughput.legend()
        throughput.grid(alpha=0.3)
        for axis in axes:
            axis.set_xscale("log", base=2)
            axis.set_xticks(xs, labels)
            axis.minorticks_off()
        fig.suptitle(f"{suite} sweep ({model_label(str(finite[0].server.get('model', '')))})")
        fig.tight_layout()
        path = store.root / "plots" / f"{suite}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
