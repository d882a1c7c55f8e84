"""Where measured points go, the moment they are measured.

Layout of a session's results directory::

    points/<point>.json   one file per benchmark point: the keys of
                          `vllm bench serve --save-result`, plus ours
    points/repeats/<point>.r<K>.json
                          with --vllm-repeats: each repeat's own such file; the
                          point's file then holds the medians and intervals
    summary.json          every point's flat metrics, rebuilt after each point
    summary.csv           the same as a table
    plots/<suite>.png     drawn at the end of the session

Every file is written to a temporary name and renamed into place, so a crash
or Ctrl-C never leaves a truncated file. The summaries are rebuilt from the
point files under a lock, so pytest-xdist workers can share one directory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from pytest_vllm_serve.errors import ResultsWriteError
from pytest_vllm_serve.files import atomic_write_text

POINTS_DIR = "points"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
REPEATS_DIR = "repeats"
#: Marks our summary files, so a baseline can be recognised as one.
FORMAT = "pytest-vllm-serve/results-v1"
#: Where a repeat file keeps what the point's last repeat (and a later gate) reads back.
REPEAT_KEY = "pytest_vllm_serve_repeat"
#: The server's figures in summary.csv, when a point has them (docs/server-metrics.md).
SERVER_COLUMNS = (
    "server_kv_cache_usage_max",
    "server_running_max",
    "server_waiting_max",
    "server_ttft_mean_ms",
    "server_e2e_mean_ms",
    "server_queue_mean_ms",
    "server_preemptions",
    "server_prefix_cache_hit_rate",
    "server_gpu_util_pct_mean",
    "server_gpu_mem_used_mib_max",
    "server_gpu_power_w_mean",
    "server_gpu_energy_j",
    "server_output_tokens_per_joule",
)


def natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sorts "x=8" before "x=32": runs of digits compare as numbers, the rest as text."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _clean(value: Any) -> Any:
    """JSON has no inf/nan: write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(data: Any) -> str:
    return json.dumps(_clean(data), indent=1, default=_json_default, allow_nan=False)


def safe_name(point_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", point_id).strip("_")
    return name[-180:] or "point"


@dataclass
class PointRecord:
    """One measured benchmark point, as kept in the summaries."""

    id: str  # the pytest node id: stable across runs, so baselines can match it
    suite: str
    params: dict[str, Any]
    metrics: dict[str, float]
    server: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    partial: str | None = None  # why the point was cut short (the server died or stalled); None: complete
    #: --vllm-repeats: {"n": N, "metrics": {key: {median, ci_low, ci_high, cv}}, "values": {key: [...]}}
    repeats: dict[str, Any] | None = None
    #: {"stable": bool, "reasons": [...]}: too short, or too noisy between repeats
    stability: dict[str, Any] | None = None
    #: the metrics of the requests after the ramp-up and before the drain (capped points)
    steady_state: dict[str, float] | None = None
    #: the server's /metrics over the measured phase (bench/server_metrics/): status, figures, warnings
    server_metrics: dict[str, Any] | None = None
    #: the regression gate's verdict: {"verdict": pass|fail|undecided|not gated, "reasons": [...]}
    gate: dict[str, Any] | None = None
    #: a multi-turn point's metrics per turn: {"1": {"median_ttft_ms": ...}, "2": ...}
    per_turn: dict[str, dict[str, float]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "suite": self.suite,
            "params": self.params,
            "metrics": self.metrics,
            "server": self.server,
            "file": self.file,
            "partial": self.partial,
            "repeats": self.repeats,
            "stability": self.stability,
            "steady_state": self.steady_state,
            "server_metrics": self.server_metrics,
            "gate": self.gate,
            "per_turn": self.per_turn,
        }

    def server_figures(self) -> dict[str, float]:
        """The server's figures as flat ``server_<name>`` values (empty without them)."""
        figures = (self.server_metrics or {}).get("figures") or {}
        return {f"server_{k}": v for k, v in figures.items()}

    @property
    def unstable(self) -> list[str]:
        """Why the point's numbers are not to be trusted as they are; empty when they are."""
        return list((self.stability or {}).get("reasons") or [])


@dataclass
class ResultsStore:
    root: Path

    @property
    def points_dir(self) -> Path:
        return self.root / POINTS_DIR

    def save_point(self, point: PointRecord, full_result: dict[str, Any]) -> Path:
        """Write the point's full result, then rebuild the summaries. Returns the point file.

        On a write error (a full disk) nothing half-written is left: each file is
        complete or absent, and the error says where and why.
        """
        path = self.points_dir / f"{safe_name(point.id)}.json"
        point.file = str(path.relative_to(self.root))
        try:
            atomic_write_text(path, dumps({**full_result, "pytest_vllm_serve": point.to_json()}))
            self.rebuild_summaries()
        except OSError as exc:
            raise ResultsWriteError(
                f"could not write the results of {point.id} under {self.root}: {exc.strerror or exc}.\n"
                "  fix: free space there, or choose another --vllm-results-dir; the points written "
                "before this one are complete"
            ) from None
        return path

    def update_point(self, point: PointRecord) -> None:
        """Rewrite the record in the point's saved file (its gate verdict, known after the
        save), then the summaries. The rest of the file is kept as it is."""
        path = self.root / point.file
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["pytest_vllm_serve"] = point.to_json()
            atomic_write_text(path, dumps(data))
            self.rebuild_summaries()
        except (OSError, ValueError) as exc:
            raise ResultsWriteError(
                f"could not record the gate's verdict of {point.id} in {path}: {exc}; the point's measured "
                "results are saved as they were"
            ) from None

    def repeat_path(self, point_id: str, index: int) -> Path:
        return self.points_dir / REPEATS_DIR / f"{safe_name(point_id)}.r{index}.json"

    def save_repeat(self, point_id: str, index: int, full_result: dict[str, Any]) -> Path:
        """One repeat's full result (``vllm bench serve`` keys plus ours), kept at once."""
        path = self.repeat_path(point_id, index)
        try:
            atomic_write_text(path, dumps(full_result))
        except OSError as exc:
            raise ResultsWriteError(
                f"could not write repeat {index} of {point_id} under {self.root}: {exc.strerror or exc}.\n"
                "  fix: free space there, or choose another --vllm-results-dir"
            ) from None
        return path

    def load_repeat(self, point_id: str, index: int) -> dict[str, Any] | None:
        try:
            data = json.loads(self.repeat_path(point_id, index).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def load_points(self) -> list[PointRecord]:
        """Every point of the run, in natural order of their files (concurrency=8 before 32)."""
        points = []
        for path in sorted(self.points_dir.glob("*.json"), key=lambda p: natural_key(p.name)):
            try:
                meta = json.loads(path.read_text())["pytest_vllm_serve"]
            except (OSError, ValueError, KeyError):
                continue
            points.append(PointRecord(**meta))
        return points

    def rebuild_summaries(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / ".summary.lock")):
            points = self.load_points()
            atomic_write_text(
                self.root / SUMMARY_JSON,
                dumps({"format": FORMAT, "points": [p.to_json() for p in points]}),
            )
            atomic_write_text(self.root / SUMMARY_CSV, summary_csv(points))


def summary_csv(points: Iterable[PointRecord]) -> str:
    """One row per point: its params, then its metrics; a repeated point adds each metric's
    interval and CV (``<metric>_ci_low``, ``_ci_high``, ``_cv``); ``unstable`` says why not to trust it."""
    points = list(points)
    params = sorted({k for p in points for k in p.params})
    metrics = sorted({k for p in points for k in p.metrics})
    spread = sorted({k for p in points for k in ((p.repeats or {}).get("metrics") or {})})
    spread_columns = [f"{k}_{part}" for k in spread for part in ("ci_low", "ci_high", "cv")]
    server = [k for k in SERVER_COLUMNS if any(k in p.server_figures() for p in points)]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "suite", "partial", "unstable", *params, *metrics, "repeats", *spread_columns, *server])
    for p in points:
        intervals = (p.repeats or {}).get("metrics") or {}
        writer.writerow(
            [
                p.id,
                p.suite,
                p.partial or "",
                "; ".join(p.unstable),
                *(p.params.get(k, "") for k in params),
                *(p.metrics.get(k, "") for k in metrics),
                (p.repeats or {}).get("n", 1),
                *(_blank(intervals.get(k, {}).get(part)) for k in spread for part in ("ci_low", "ci_high", "cv")),
                *(_blank(p.server_figures().get(k)) for k in server),
            ]
        )
    return out.getvalue()


def _blank(value: Any) -> Any:
    return "" if value is None else value
