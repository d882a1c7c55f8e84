"""What a report reads: a session's results directory, loaded into typed values.

A run is a results directory (``vllm-results/<session>/``) or its ``summary.json``.
The points come from the summary (or the point files when there is none yet); the
per-request samples and the server timeline of a point come from its own files,
read only when the page needs them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vllm_serve.bench.sinks.results import FORMAT, SUMMARY_JSON, PointRecord, ResultsStore
from pytest_vllm_serve.bench.sinks.slo_search import read_searches
from pytest_vllm_serve.errors import ConfigError

#: The session's header: versions, machine, start time (written by the plugin at the start).
SESSION_JSON = "session.json"
#: At most this many samples per series and point go into a page (evenly spaced order
#: statistics of the sorted samples, so the distribution's shape is kept), with 4
#: significant digits: a page of 1,000 points stays a few MB (docs/report.md).
MAX_SAMPLES = 200
#: At most this many rows of a point's server timeline go into a page.
MAX_TIMELINE_ROWS = 400
#: The per-request series a point's page section shows, in ms.
DISTRIBUTIONS = ("ttft", "tpot", "per_token_itl", "e2el")


class ReportInputError(ConfigError):
    """A path that is not a results directory or summary, or a summary of another format."""


@dataclass
class Run:
    """One session's results, as a report reads them."""

    root: Path  # the results directory
    label: str  # how pages name it: the directory's name
    points: list[PointRecord]
    session: dict[str, Any] = field(default_factory=dict)  # session.json, empty when absent
    format: str = FORMAT
    searches: list[dict[str, Any]] = field(default_factory=list)  # the SLO searches (slo/*.json)

    @property
    def servers(self) -> list[dict[str, Any]]:
        """Each server that measured a point, once, in the order they first appear."""
        seen: dict[str, dict[str, Any]] = {}
        for point in self.points:
            info = point.server or {}
            key = json.dumps({k: info.get(k) for k in ("url", "spec", "command", "launcher")}, sort_keys=True)
            seen.setdefault(key, info)
        return list(seen.values())


def load_run(path: Path, *, what: str = "results") -> Run:
    """The run at ``path``: a results directory, or the summary.json in one.

    Raises ReportInputError (naming the path and the fix) for anything else."""
    path = Path(path)
    if path.is_file():
        summary, root = path, path.parent
    elif path.is_dir():
        summary, root = path / SUMMARY_JSON, path
    else:
        raise ReportInputError(
            f"{what} {path} does not exist.\n  fix: give a session's results directory "
            "(vllm-results/<session>, or vllm-results/latest) or the summary.json in one"
        )
    points = _points(summary, root, what)
    return Run(root=root, label=_label(root), points=points, session=_session(root), searches=read_searches(root))


def _label(root: Path) -> str:
    resolved = root.resolve()
    return resolved.name if root.name == "latest" else root.name or str(root)


def _points(summary: Path, root: Path, what: str) -> list[PointRecord]:
    if not summary.exists():
        if (root / "points").is_dir():  # a session that ended before its first summary
            return ResultsStore(root).load_points()
        raise ReportInputError(
            f"{what} {root} is not a results directory: it has no {SUMMARY_JSON} and no points/.\n"
            "  fix: give a session's results directory (vllm-results/<session>) or its summary.json"
        )
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportInputError(f"{what} {summary} is not a results summary: not valid JSON ({exc})") from None
    found = data.get("format") if isinstance(data, dict) else None
    if found != FORMAT:
        other = f"format {found!r}" if found else "no pytest-vllm-serve format key"
        raise ReportInputError(
            f"{what} {summary} is not a summary this version reads ({other}; this version reads {FORMAT!r}).\n"
            "  fix: give the summary.json of a session run with this plugin version, or rebuild the report "
            "with the plugin version that wrote it"
        )
    try:
        return [PointRecord(**p) for p in data.get("points", [])]
    except TypeError as exc:
        raise ReportInputError(f"{what} {summary}: a point of an unknown shape ({exc})") from None


def _session(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / SESSION_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def request_files(run: Run, point: PointRecord) -> list[dict[str, Any]]:
    """The result files that hold the point's per-request lists: each repeat's file for a
    repeated point, else the point's own. Files that are gone or unreadable are left out."""
    repeated = (point.repeats or {}).get("files")
    names = [f for f in repeated if isinstance(f, str)] if isinstance(repeated, list) else [point.file]
    return [data for name in names if name and (data := _read(run.root / name)) is not None]


def per_token_gaps(itls: list[float], tokens: list[int]) -> list[float]:
    """Per-token ITL of one request from its file's lists: ``itls`` are the gaps between
    consecutive chunks, ``tokens`` each chunk's token count (one more than the gaps). A chunk
    of k tokens after a gap g gives k samples of g / k; chunks without tokens add their gap
    to the next one (as bench/metrics/per_request.per_token_itl does)."""
    if len(tokens) != len(itls) + 1:
        return list(itls)  # no token counts per chunk: one sample per gap
    out: list[float] = []
    pending = 0.0
    seen_token = tokens[0] > 0
    for gap, k in zip(itls, tokens[1:]):
        pending += gap
        if k <= 0:
            continue
        if seen_token:
            out.extend([pending / k] * k)
        seen_token, pending = True, 0.0
    return out


def thin(values: list[float], limit: int = MAX_SAMPLES) -> list[float]:
    """``values`` sorted, and at most ``limit`` of them: evenly spaced order statistics
    (the extremes included), each to 4 significant digits."""
    ordered = sorted(v for v in values if math.isfinite(v))
    if len(ordered) > limit:
        step = (len(ordered) - 1) / (limit - 1)
        ordered = [ordered[round(i * step)] for i in range(limit)]
    return [float(f"{v:.4g}") for v in ordered]


def point_samples(*files: dict[str, Any]) -> dict[str, list[float]]:
    """Per-request samples (ms) of a point's result files (its repeats' pooled), by series;
    thinned for a page."""
    out: dict[str, list[float]] = {name: [] for name in DISTRIBUTIONS}
    for data in files:
        _add_samples(out, data)
    return {name: thin(values) for name, values in out.items() if values}


def _add_samples(out: dict[str, list[float]], data: dict[str, Any]) -> None:
    ttfts, latencies = data.get("ttfts") or [], data.get("latencies") or []
    lens, errors = data.get("output_lens") or [], data.get("errors") or []
    itls, tokens = data.get("itls") or [], data.get("chunk_tokens") or []
    for i, ttft in enumerate(ttfts):
        ok = (errors[i] if i < len(errors) else "") == "" and ttft and ttft > 0
        if not ok:
            continue
        out["ttft"].append(ttft * 1000)
        latency = latencies[i] if i < len(latencies) else None
        if latency:
            out["e2el"].append(latency * 1000)
            n = lens[i] if i < len(lens) else 0
            if n and n > 1:
                out["tpot"].append((latency - ttft) / (n - 1) * 1000)
        gaps = itls[i] if i < len(itls) and isinstance(itls[i], list) else []
        counts = tokens[i] if i < len(tokens) and isinstance(tokens[i], list) else []
        out["per_token_itl"].extend(g * 1000 for g in per_token_gaps(gaps, counts))


def point_timeline(run: Run, point: PointRecord) -> dict[str, list[float]] | None:
    """The point's server (and GPU) timeline, column by column, or None without one."""
    series = (point.server_metrics or {}).get("series_file")
    path = run.root / series if isinstance(series, str) else None
    if path is None or not path.exists():
        return None
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return None
    if not rows:
        return None
    step = max(1, math.ceil(len(rows) / MAX_TIMELINE_ROWS))
    rows = rows[::step]
    columns: dict[str, list[float]] = {}
    for name in rows[0]:
        try:
            columns[name] = [float(row[name]) if row[name] not in ("", None) else math.nan for row in rows]
        except ValueError:
            continue
    return columns if "t_s" in columns else None
