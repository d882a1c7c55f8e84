"""A baseline for --vllm-fail-on: an earlier run's points (and SLO searches) read back.

It is one of: our summary.json (its results dir also holds the repeat files and
slo_search.json), pytest-benchmark's ``--benchmark-json`` output (our metrics ride in each
benchmark's extra_info), or a slo_search.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vllm_serve.bench.sinks import slo_search
from pytest_vllm_serve.bench.sinks.results import FORMAT, REPEAT_KEY
from pytest_vllm_serve.errors import ConfigError


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
    #: SLO search id -> its answer (None: no load met the SLO), from a slo_search.json
    searches: dict[str, float | None] = field(default_factory=dict)

    def search_best(self, search_id: str) -> tuple[bool, float | None]:
        """(found, the answer) of a search: from slo_search.json, or a --benchmark-json's slo_best."""
        if search_id in self.searches:
            return True, self.searches[search_id]
        value = (self.points.get(search_id) or {}).get("slo_best")
        return (value is not None), value

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
    """The points of a results file: our summary.json (and the slo_search.json beside it),
    pytest-benchmark's ``--benchmark-json`` output (our metrics ride in each benchmark's
    extra_info), or a slo_search.json alone."""
    if path.name == slo_search.SLO_SEARCH_JSON:
        return Baseline({}, searches=slo_search.bests(slo_search.load_file(path)))
    points = _load_baseline_points(path)
    partial = {pid: str(metrics.pop("partial")) for pid, metrics in points.items() if metrics.get("partial")}
    blocks = {pid: m.pop("repeats", None) for pid, m in points.items()}
    repeats = {pid: _repeat_values(block) for pid, block in blocks.items()}
    results_dir = path.parent if _is_summary(path) else None  # repeat files are named relative to it
    beside = results_dir / slo_search.SLO_SEARCH_JSON if results_dir is not None else None
    searches = slo_search.bests(slo_search.load_file(beside)) if beside is not None and beside.exists() else {}
    return Baseline(
        {pid: _floats(m) for pid, m in points.items() if pid not in partial},
        partial,
        {pid: values for pid, values in repeats.items() if values and pid not in partial},
        {
            pid: _repeat_files(results_dir, block)
            for pid, block in blocks.items()
            if repeats[pid] and pid not in partial
        },
        searches,
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
