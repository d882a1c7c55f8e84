"""A measured phase's time series: one row per snapshot, written to ``points/<point>.metrics.csv``.

``t_s`` is seconds since the phase's first snapshot; the counters are their growth since then.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from pytest_vllm_serve.bench.server_metrics.parse import Snapshot
from pytest_vllm_serve.bench.server_metrics.summary import COUNTERS, GAUGES, gauge_values

COLUMNS = ("t_s", *GAUGES, *COUNTERS)


def series_rows(series: Sequence[Snapshot]) -> list[dict[str, float | str]]:
    if not series:
        return []
    first = series[0]
    rows = []
    for snapshot in series:
        row: dict[str, float | str] = {"t_s": round(snapshot.t - first.t, 3)}
        for flat, (name, combine) in GAUGES.items():
            value = gauge_values(snapshot, name, combine)
            row[flat] = "" if value is None else value
        for flat, name in COUNTERS.items():
            end, start = snapshot.total(name), first.total(name)
            row[flat] = "" if end is None or start is None else end - start
        rows.append(row)
    return rows


def series_csv(series: Sequence[Snapshot]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(series_rows(series))
    return out.getvalue()
