"""The pages: a session's report.html and a comparison of two runs, rendered with Jinja2 from
templates/, and the comparison as Markdown. Every page is one file: its CSS, its script and
plotly.js are inline, so it opens with no network."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pytest_vllm_serve.bench.sinks.report.compare import ORDER, Comparison, PointComparison
from pytest_vllm_serve.bench.sinks.report.data import Run, point_samples, point_timeline, request_files
from pytest_vllm_serve.bench.sinks.report.figures import search_figures, suite_figures
from pytest_vllm_serve.bench.sinks.results import PointRecord
from pytest_vllm_serve.files import atomic_write_text

REPORT_HTML = "report.html"
#: (title, metric, format) of the points table.
COLUMNS = (
    ("ok", "completed", "{:.0f}"),
    ("failed", "failed", "{:.0f}"),
    ("req/s", "request_throughput", "{:.2f}"),
    ("target req/s", "target_request_rate", "{:.2f}"),
    ("achieved req/s", "achieved_request_rate", "{:.2f}"),
    ("out tok/s", "output_throughput", "{:.1f}"),
    ("TTFT p50", "median_ttft_ms", "{:.1f}"),
    ("TTFT p99", "p99_ttft_ms", "{:.1f}"),
    ("TPOT p50", "median_tpot_ms", "{:.2f}"),
    ("ITL p50", "median_itl_ms", "{:.2f}"),
    ("E2EL p99", "p99_e2el_ms", "{:.0f}"),
)
#: The raw files a page links to, by folder (at most LINKS_PER_FOLDER each).
LINKED = ("points", "logs", "profiles", "plots")
LINKS_PER_FOLDER = 200


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pytest_vllm_serve.bench.sinks.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _format
    env.filters["change"] = _change
    env.filters["script_json"] = script_json
    return env


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as the plotly package ships it (its version is the package's)."""
    return (resources.files("plotly") / "package_data" / "plotly.min.js").read_text(encoding="utf-8")


def _asset(name: str) -> str:
    return (resources.files("pytest_vllm_serve.bench.sinks.report") / "templates" / name).read_text(encoding="utf-8")


def script_json(data: Any) -> str:
    """JSON for a <script type="application/json"> block: no '</' can end the block early,
    and NaN/inf (which JSON has not) become null."""
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _format(value: Any, fmt: str = "{:.4g}") -> str:
    if value is None or value == "":
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return fmt.format(number) if math.isfinite(number) else str(value)


def _change(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


@dataclass(frozen=True)
class PointRow:
    """A row of the points table and what its details show."""

    n: int
    point: PointRecord
    name: str
    marks: list[str]
    gate: str
    cells: list[tuple[str, float | None]]  # (shown text, sort value)
    links: list[tuple[str, str]]  # (label, path relative to the page)


def _gate_text(point: PointRecord) -> str:
    return str((point.gate or {}).get("verdict") or "not gated")


def _row(n: int, point: PointRecord) -> PointRow:
    marks = (["partial"] if point.partial else []) + (["unstable"] if point.unstable else [])
    cells = []
    for _title, key, fmt in COLUMNS:
        value = point.metrics.get(key)
        number = value if isinstance(value, (int, float)) and math.isfinite(value) else None
        cells.append((_format(value, fmt), number))
    links = [("result", point.file)] if point.file else []
    figures = point.server_metrics or {}
    for label, key in (("server series", "series_file"), ("timeline", "timeline_file")):
        if isinstance(figures.get(key), str):
            links.append((label, figures[key]))
    log = (point.server or {}).get("log")
    if isinstance(log, str):
        links.append(("server log", log))
    return PointRow(n, point, point.id.split("::")[-1], marks, _gate_text(point), cells, links)


def _details(run: Run, point: PointRecord) -> dict[str, Any]:
    return {
        "samples": point_samples(*request_files(run, point)),
        "timeline": point_timeline(run, point),
        "reasons": point.unstable + ([f"partial: {point.partial}"] if point.partial else []),
    }


def raw_files(run: Run) -> list[tuple[str, list[str]]]:
    """(folder, files relative to the results dir) for the page's file list."""
    out = []
    for folder in LINKED:
        base = run.root / folder
        if not base.is_dir():
            continue
        files = sorted(
            str(p.relative_to(run.root)) for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        if files:
            out.append(
                (
                    folder,
                    files[:LINKS_PER_FOLDER]
                    + ([f"... and {len(files) - LINKS_PER_FOLDER} more"] if len(files) > LINKS_PER_FOLDER else []),
                )
            )
    return out


def _header(run: Run) -> dict[str, Any]:
    session = run.session
    return {
        "started": session.get("started") or "-",
        "plugin_version": session.get("plugin_version") or "-",
        "vllm_version": session.get("vllm_version") or "-",
        "python": session.get("python") or "-",
        "machine": session.get("machine") or {},
        "written": datetime.now().isoformat(timespec="seconds"),
    }


def render_session(run: Run) -> str:
    """A session's report.html."""
    slos = run.session.get("goodput_slos_ms") or {}
    rows = [_row(n, p) for n, p in enumerate(run.points)]
    data = {
        "suites": [
            {"suite": s.suite, "figures": [f for _, f in s.figures]}
            for s in [*suite_figures([(run.label, run.points)], slos), *search_figures(run.searches)]
        ],
        "details": {str(r.n): _details(run, r.point) for r in rows},
    }
    return (
        _environment()
        .get_template("session.html.j2")
        .render(
            title=f"pytest-vllm-serve report: {run.label}",
            run=run,
            header=_header(run),
            servers=run.servers,
            columns=[c[0] for c in COLUMNS],
            rows=rows,
            suites=data["suites"],
            files=raw_files(run),
            data=data,
            css=_asset("report.css"),
            script=_asset("report.js"),
            plotly=plotly_js(),
        )
    )


def write_session_report(run: Run, path: Path | None = None) -> Path:
    """Write (atomically) the run's report.html, or the page at ``path``; returns where."""
    path = path or run.root / REPORT_HTML
    atomic_write_text(path, render_session(run))
    return path


def render_compare(comparison: Comparison) -> str:
    """The comparison page: the verdict list, the side-by-side table, the overlaid curves."""
    old, new = comparison.old, comparison.new
    suites = suite_figures([(old.label, old.points), (new.label, new.points)], new.session.get("goodput_slos_ms"))
    data = {"suites": [{"suite": s.suite, "figures": [f for _, f in s.figures]} for s in suites]}
    return (
        _environment()
        .get_template("compare.html.j2")
        .render(
            title=f"pytest-vllm-serve comparison: {old.label} -> {new.label}",
            comparison=comparison,
            order=ORDER,
            thresholds=", ".join(str(t) for t in comparison.thresholds),
            suites=data["suites"],
            data=data,
            css=_asset("report.css"),
            script=_asset("report.js"),
            plotly=plotly_js(),
        )
    )


def _md(text: str) -> str:
    return html.escape(text).replace("|", "\\|")


def compare_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown: a verdict count, then a table of every compared point's
    metrics (old -> new, change), regressions first; fits a CI job summary or a PR comment."""
    old, new = comparison.old, comparison.new
    lines = [f"## pytest-vllm-serve: {_md(old.label)} → {_md(new.label)}", ""]
    counts = ", ".join(f"{len(comparison.by_outcome(o))} {o}" for o in ORDER)
    lines += [f"{counts} (thresholds: `{', '.join(str(t) for t in comparison.thresholds)}`)", ""]
    if comparison.points:
        metrics = [row.metric for row in comparison.points[0].rows]
        lines.append("| point | verdict | " + " | ".join(metrics) + " |")
        lines.append("| --- | --- | " + " | ".join("---:" for _ in metrics) + " |")
        for point in comparison.points:
            cells = [_md_cell(row.old, row.new, row.change) for row in point.rows]
            lines.append(f"| `{_md(point.id.split('::')[-1])}` | {_badge(point)} | " + " | ".join(cells) + " |")
        lines.append("")
    for point in comparison.points:
        moved = [f"{row.metric} {_change(row.change)}" for row in point.rows if row.verdict in _MOVED[point.outcome]]
        if point.outcome != "unchanged":
            lines.append(f"- **{point.outcome}** `{_md(point.id)}`" + (": " + ", ".join(moved) if moved else ""))
    if comparison.notes:
        lines += ["", "Not compared:"] + [f"- {_md(note)}" for note in comparison.notes]
    return "\n".join(lines).rstrip() + "\n"


#: The thresholds' verdicts a point's line names, by the point's outcome.
_MOVED = {"regressed": ("fail",), "undecided": ("undecided",), "improved": ("pass",), "unchanged": ()}


def _badge(point: PointComparison) -> str:
    return {"regressed": "🔴 regressed", "undecided": "🟡 undecided", "improved": "🟢 improved"}.get(
        point.outcome, "unchanged"
    )


def _md_cell(old: float | None, new: float | None, change: float | None) -> str:
    return f"{_format(old)} → {_format(new)} ({_change(change)})"
