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

from pytest_vllm_serve.errors import ConfigError, ResultsWriteError
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


@dataclass
class Baseline:
    """An earlier run's points, by id. Partial points (cut short by a dead or stalled server)
    are kept apart: they are no baseline, and the points they would gate are not gated."""

    points: dict[str, dict[str, float]]
    partial: dict[str, str] = field(default_factory=dict)  # point id -> why it was cut short
    #: point id -> metric -> the value of every repeat, for points measured with --vllm-repeats
    repeats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: point id -> its repeat files, for a summary.json baseline whose results dir holds them
    repeat_files: dict[str, list[Path]] = field(default_factory=dict)

    def get(self, point_id: str) -> dict[str, float] | None:
        return self.points.get(point_id)

    def repeat_values(self, point_id: str) -> dict[str, list[float]] | None:
        """Each metric's per-repeat values, or None for a point measured once."""
        return self.repeats.get(point_id)

    def repeat_samples(self, point_id: str) -> list[dict[str, list[float]]] | None:
        """Each complete repeat's per-request samples (ms) by series, read from the baseline's
        repeat files; None when a file is gone or unreadable, or the point was measured once."""
        out = []
        for path in self.repeat_files.get(point_id, []):
            try:
                kept = json.loads(path.read_text()).get(REPEAT_KEY)
            except (OSError, ValueError, AttributeError):
                return None
            if not isinstance(kept, dict) or not isinstance(kept.get("samples"), dict):
                return None
            if not kept.get("partial"):
                out.append(kept["samples"])
        return out if len(out) > 1 else None

    def note(self) -> str | None:
        """One line naming the partial points, or None."""
        if not self.partial:
            return None
        names = ", ".join(f"{pid.split('::')[-1]} ({cause})" for pid, cause in sorted(self.partial.items()))
        return f"vllm: --vllm-baseline: {len(self.partial)} partial point(s) refused as a baseline, not gated: {names}"


def load_baseline(path: Path) -> Baseline:
    """The points of a results file: our summary.json, or pytest-benchmark's ``--benchmark-json``
    output (our metrics ride in each benchmark's extra_info)."""
    points = _load_baseline_points(path)
    partial = {pid: str(metrics.pop("partial")) for pid, metrics in points.items() if metrics.get("partial")}
    blocks = {pid: m.pop("repeats", None) for pid, m in points.items()}
    repeats = {pid: _repeat_values(block) for pid, block in blocks.items()}
    results_dir = path.parent if _is_summary(path) else None  # repeat files are named relative to it
    return Baseline(
        {pid: _floats(m) for pid, m in points.items() if pid not in partial},
        partial,
        {pid: values for pid, values in repeats.items() if values and pid not in partial},
        {
            pid: _repeat_files(results_dir, block)
            for pid, block in blocks.items()
            if repeats[pid] and pid not in partial
        },
    )


def _repeat_files(results_dir: Path | None, repeats: Any) -> list[Path]:
    """The repeat files a summary.json names (relative to its results dir); none for other files."""
    files = repeats.get("files") if isinstance(repeats, dict) else None
    if not isinstance(files, list) or results_dir is None:
        return []
    return [results_dir / f for f in files if isinstance(f, str)]


def _is_summary(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _repeat_values(repeats: Any) -> dict[str, list[float]] | None:
    values = repeats.get("values") if isinstance(repeats, dict) else None
    if not isinstance(values, dict):
        return None
    out = {}
    for key, series in values.items():
        if isinstance(series, list) and len(series) > 1 and all(isinstance(v, (int, float)) for v in series):
            out[key] = [float(v) for v in series]
    return out or None


def _load_baseline_points(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        raise ConfigError(f"--vllm-baseline {path} does not exist.\n  fix: give the summary.json of an earlier run")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--vllm-baseline {path} is not a results file: not valid JSON ({exc})") from None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return {
            p["id"]: {**p["metrics"], "partial": p.get("partial"), "repeats": p.get("repeats")}
            for p in data.get("points", [])
        }
    if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
        found = {
            b["extra_info"].get("point_id") or b["fullname"]: {
                **b["extra_info"]["metrics"],
                "partial": b["extra_info"].get("partial"),
                "repeats": b["extra_info"].get("repeats"),
            }
            for b in data["benchmarks"]
            if isinstance(b.get("extra_info"), dict) and isinstance(b["extra_info"].get("metrics"), dict)
        }
        if found:
            return found
    raise ConfigError(
        f"--vllm-baseline {path} is not a results file: it is neither a pytest-vllm-serve summary.json "
        "nor a --benchmark-json file with pytest-vllm-serve metrics.\n"
        "  fix: use vllm-results/<run>/summary.json or the --benchmark-json output of an earlier run"
    )


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out
