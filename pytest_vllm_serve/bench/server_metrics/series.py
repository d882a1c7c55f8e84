"""A measured phase's time series: one row per snapshot, written to ``points/<point>.metrics.csv``.

``t_s`` is seconds since the phase's first snapshot; the counters are their growth since then.
Where GPUs were sampled, their aggregates follow (:func:`.gpu.aggregate`; ``gpu_energy_j``
is the growth of the energy counters since the first row).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

from pytest_vllm_serve.bench.server_metrics.gpu import GpuSample, aggregate, summed
from pytest_vllm_serve.bench.server_metrics.parse import Snapshot
from pytest_vllm_serve.bench.server_metrics.summary import COUNTERS, GAUGES, gauge_values

COLUMNS = ("t_s", *GAUGES, *COUNTERS)
GPU_COLUMNS = ("gpu_util_pct", "gpu_mem_used_mib", "gpu_sm_clock_mhz", "gpu_power_w", "gpu_energy_j")


def _gpu_cells(samples: Sequence[GpuSample] | None, first: float | None) -> dict[str, float | str]:
    if samples is None:
        return dict.fromkeys(GPU_COLUMNS, "")
    cells: dict[str, float | str] = {k: "" if v is None else round(v, 3) for k, v in aggregate(samples).items()}
    energy = summed(samples, "energy_j")
    cells["gpu_energy_j"] = "" if energy is None or first is None else round(energy - first, 3)
    return cells


def series_rows(
    series: Sequence[Snapshot], gpu: Mapping[float, Sequence[GpuSample]] | None = None
) -> list[dict[str, float | str]]:
    if not series:
        return []
    first = series[0]
    gpu = gpu or {}
    first_gpu = next((gpu[s.t] for s in series if s.t in gpu), None)
    first_energy = summed(first_gpu, "energy_j") if first_gpu is not None else None
    rows = []
    for snapshot in series:
        row: dict[str, float | str] = {"t_s": round(snapshot.t - first.t, 3)}
        for flat, (name, combine) in GAUGES.items():
            value = gauge_values(snapshot, name, combine)
            row[flat] = "" if value is None else value
        for flat, name in COUNTERS.items():
            end, start = snapshot.total(name), first.total(name)
            row[flat] = "" if end is None or start is None else end - start
        if gpu:
            row.update(_gpu_cells(gpu.get(snapshot.t), first_energy))
        rows.append(row)
    return rows


def series_csv(series: Sequence[Snapshot], gpu: Mapping[float, Sequence[GpuSample]] | None = None) -> str:
    """The CSV of :func:`series_rows`; the GPU columns only when GPUs were sampled."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS + (GPU_COLUMNS if gpu else ()))
    writer.writeheader()
    writer.writerows(series_rows(series, gpu))
    return out.getvalue()
