"""A point's timeline: what the server and its GPUs did during the measured phase, with the
request sends marked (``points/<point>.timeline.png``, docs/server-metrics.md).

Panels, against seconds since the phase began: the request sends; the KV cache usage; the
requests running and waiting; where GPUs were sampled, their utilization and power. Drawn
from the rows of the point's time series (:func:`.server_metrics.series.series_rows`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

Row = Mapping[str, float | str]


def _column(rows: Sequence[Row], key: str) -> tuple[list[float], list[float]]:
    """(t, value) of the rows that have ``key``."""
    ts, values = [], []
    for row in rows:
        value = row.get(key, "")
        if value != "" and value is not None:
            ts.append(float(row["t_s"]))
            values.append(float(value))
    return ts, values


def draw_timeline(path: Path, rows: Sequence[Row], sends: Sequence[float], title: str) -> Path | None:
    """Write the timeline PNG; None when matplotlib is missing or there is nothing to draw."""
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    gpu = bool(_column(rows, "gpu_util_pct")[0])
    heights = [1, 2, 2] + ([2] if gpu else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(9, 1.6 * sum(heights) / 2 + 1), sharex=True,
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    try:
        _sends(axes[0], sends)
        ts, kv = _column(rows, "kv_cache_usage")
        axes[1].plot(ts, [100 * v for v in kv], marker=".", color="tab:purple")
        axes[1].set_ylabel("KV cache %")
        axes[1].set_ylim(bottom=0)
        for key, color in (("running", "tab:blue"), ("waiting", "tab:red")):
            axes[2].step(*_column(rows, key), where="post", label=key, color=color)
        axes[2].set_ylabel("requests")
        axes[2].legend(loc="upper right", fontsize="small")
        if gpu:
            _gpus(axes[3], rows)
        axes[-1].set_xlabel("seconds since the measured phase began")
        for ax in axes[1:]:
            ax.grid(alpha=0.3)
        fig.suptitle(textwrap.fill(title, 110), fontsize="small")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
    return path


def _sends(ax, sends: Sequence[float]) -> None:
    if sends:
        ax.eventplot([list(sends)], colors="tab:gray", linelengths=0.8, linewidths=0.6)
    ax.set_yticks([])
    ax.set_ylabel("sends", rotation=0, ha="right", va="center")


def _gpus(ax, rows: Sequence[Row]) -> None:
    ax.plot(*_column(rows, "gpu_util_pct"), marker=".", color="tab:green", label="utilization %")
    ax.set_ylabel("GPU util %")
    ax.set_ylim(0, 105)
    power = ax.twinx()
    power.plot(*_column(rows, "gpu_power_w"), marker=".", color="tab:orange", label="power W")
    power.set_ylabel("GPU power W")
    power.set_ylim(bottom=0)
    lines = ax.get_lines() + power.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize="small")
