"""The SLO search's plot: each SLO metric against the searched variable, with its threshold.

One PNG per search, ``plots/slo_<test>.png``: a panel per bound, the probes in the order of
their values (met: filled circles, missed: crosses), the bound as a dashed line and the
answer as a vertical one. Drawn from the search's own document (bench/sinks/slo_search.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_vllm_serve.bench.sinks.results import safe_name
from pytest_vllm_serve.bench.sinks.slo_search import read_searches


def draw_search_plots(root: Path) -> list[Path]:
    """Every search's PNG under ``root / plots``; none without matplotlib or probes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for document in read_searches(root):
        path = root / "plots" / f"slo_{safe_name(str(document.get('id')).split('::')[-1])}.png"
        if draw_search(plt, document, path):
            written.append(path)
    return written


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _bound(text: str) -> tuple[str, float] | None:
    """``"<=500"`` -> ("<=", 500.0)."""
    op, number = text[:2], text[2:]
    try:
        return op, float(number)
    except ValueError:
        return None


def draw_search(plt, document: Mapping[str, Any], path: Path) -> bool:
    probes = sorted(
        (p for p in document.get("probes") or [] if _number(p.get("value")) is not None), key=lambda p: p["value"]
    )
    slo = document.get("slo") or {}
    if not probes or not slo:
        return False
    fig, axes = plt.subplots(1, len(slo), figsize=(6 * len(slo), 4.2), squeeze=False)
    variable = str(document.get("variable"))
    best = _number(document.get("best"))
    for axis, (metric, text) in zip(axes[0], slo.items()):
        xs = [float(p["value"]) for p in probes]
        ys = [_number((p.get("metrics") or {}).get(metric)) for p in probes]
        axis.plot(xs, [y if y is not None else math.nan for y in ys], "-", color="0.6", zorder=1)
        for passed, marker, colour, label in ((True, "o", "tab:green", "met"), (False, "x", "tab:red", "missed")):
            chosen = [(x, y) for x, y, p in zip(xs, ys, probes) if bool(p.get("passed")) is passed and y is not None]
            if chosen:
                axis.scatter(*zip(*chosen), marker=marker, color=colour, label=label, zorder=2)
        bound = _bound(str(text))
        if bound is not None:
            axis.axhline(bound[1], linestyle="--", color="tab:orange", label=f"SLO {bound[0]} {bound[1]:g}")
        if best is not None:
            axis.axvline(best, linestyle=":", color="tab:green", label=f"best {best:g}")
        axis.set_title(metric)
        axis.set_xlabel(variable)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    name = str(document.get("id")).split("::")[-1]
    fig.suptitle(f"{name}: highest {variable} meeting the SLO", fontsize="medium")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
