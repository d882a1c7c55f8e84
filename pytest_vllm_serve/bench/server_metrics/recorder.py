"""Server metrics around a point's measured phase: one synchronous scrape right before it, the
scraper process during it, one synchronous scrape right after it; then what the point records
under ``server_metrics`` (docs/server-metrics.md).

A server without /metrics (404, or no Prometheus text at the first scrape) is said once on the
progress writer and the point goes on without server metrics (``status: unavailable``). A scrape
that fails later makes them ``partial``, with the reason; the client's metrics are untouched.

Where the server's GPUs are on this machine (bench/server_metrics/gpu.py), NVML is read beside
every scrape, the first and last in this process: the GPU figures join the server figures.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vllm_serve.bench.metrics import BenchmarkMetrics
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.repeats import Repeat
from pytest_vllm_serve.bench.server_metrics.checks import client_prompt_tokens, cross_checks, late_scrapes
from pytest_vllm_serve.bench.server_metrics.gpu import (
    GpuReader,
    GpuSample,
    gpu_figures,
    open_reader,
    server_gpus,
    visible_ids,
)
from pytest_vllm_serve.bench.server_metrics.parse import Snapshot
from pytest_vllm_serve.bench.server_metrics.process import local_pid, process_figures, tree_usage
from pytest_vllm_serve.bench.server_metrics.scraper import ScrapeError, ScraperProcess, scrape
from pytest_vllm_serve.bench.server_metrics.series import series_csv, series_rows
from pytest_vllm_serve.bench.server_metrics.summary import client_gaps, summarize
from pytest_vllm_serve.bench.sinks.results import ResultsStore, safe_name
from pytest_vllm_serve.bench.sinks.timeline import draw_timeline
from pytest_vllm_serve.files import atomic_write_text
from pytest_vllm_serve.serving.running import RunningServer

Progress = Callable[[str], None]


@dataclass
class Phase:
    """What was scraped over one measured phase."""

    start: Snapshot
    scraped: list[Snapshot] = field(default_factory=list)
    end: Snapshot | None = None
    errors: list[str] = field(default_factory=list)
    gpu: dict[float, list[GpuSample]] = field(default_factory=dict)  # by the time of the snapshot beside it

    def inside(self) -> list[Snapshot]:
        """The scraper process's snapshots between the phase's first and last scrape."""
        return [s for s in self.scraped if s.t > self.start.t and (self.end is None or s.t < self.end.t)]

    def series(self) -> list[Snapshot]:
        return [self.start, *self.inside(), *([self.end] if self.end is not None else [])]

    def gpu_series(self) -> tuple[list[float], list[list[GpuSample]]]:
        """The moments of the series that have GPU samples: their times and samples."""
        times = [s.t for s in self.series() if s.t in self.gpu]
        return times, [self.gpu[t] for t in times]


def phase_record(
    phase: Phase, metrics: BenchmarkMetrics, records: Sequence[RequestRecord], interval: float
) -> dict[str, Any]:
    """The point's ``server_metrics``: its status, figures, gaps to the client and cross-checks.
    Without the last full scrape the counters' growth is not the phase's: only the gauges stay."""
    series = phase.series()
    figures = summarize(series)
    if phase.end is None:
        figures = {k: v for k, v in figures.items() if k.endswith(("_mean", "_max")) and not k.endswith("_ms")}
    warnings: list[str] = []
    if phase.end is not None:
        figures.update(client_gaps(figures, 1000 * metrics.ttft.mean, 1000 * metrics.e2el.mean))
        warnings = cross_checks(
            figures,
            output_tokens=metrics.total_output_tokens,
            prompt_tokens=client_prompt_tokens(records),
            completed=metrics.completed,
        )
    late = late_scrapes(phase.inside(), interval)
    if late is not None:
        warnings.append(late)
    gpu = gpu_figures(*phase.gpu_series(), metrics.total_output_tokens)
    if phase.end is None:  # the energy between the moments there were is not the phase's
        gpu = {k: v for k, v in gpu.items() if k not in ("gpu_energy_j", "output_tokens_per_joule")}
    figures.update(gpu)
    return {
        "status": "partial" if phase.errors else "complete",
        "reason": phase.errors[0] if phase.errors else None,
        "errors": len(phase.errors),
        "interval_s": interval,
        "samples": len(series),
        "engines": phase.start.engines(),
        "figures": figures,
        "warnings": warnings,
    }


@dataclass
class ServerMetricsRecorder:
    """Runs around the measured phase, after the hooks' before_measure and before their
    after_measure (so that a profiler's start and stop are not in the phase's figures)."""

    server: RunningServer
    interval: float  # --vllm-metrics-interval; 0: off
    progress: Progress | None = None
    timeline: str | None = None  # the title of points/<point>.timeline.png; None: not drawn (--vllm-no-plots)
    phase: Phase | None = None
    unavailable: str | None = None
    _process: ScraperProcess | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None
    _usage: list[tuple[float, int] | None] = field(default_factory=list)  # the local tree's, at start and end
    _gpus: GpuReader | None = None

    @property
    def pid(self) -> int | None:
        return local_pid(self.server.launcher, self.server.ids)

    def __post_init__(self) -> None:
        """Start the scraper process now, during the warmup, so that its start-up is not in the
        measured phase; it scrapes from before_measure on."""
        if self.interval > 0:
            self._dir = tempfile.TemporaryDirectory(prefix="vllm-scrapes-")
            path = Path(self._dir.name) / "scrapes.jsonl"
            gpus = self._open_gpus()
            self._process = ScraperProcess(self.server.url, self.server.headers, self.interval, path, self.pid, gpus)

    def _open_gpus(self) -> list[str] | None:
        """The server's GPUs on this machine, opened through NVML (None: no GPU telemetry; said
        when the server was given GPUs here that NVML cannot read, not on a machine without any)."""
        ids = server_gpus(self.server.launcher, self.server.ids, self.server.url, visible_ids())
        if ids == []:
            return None
        self._gpus, why = open_reader(ids)
        if self._gpus is None:
            if ids is not None:
                self._say(f"no GPU telemetry: {why}")
            return None
        return [gpu for gpu, _ in self._gpus.handles]

    def _read_gpus(self, snapshot: Snapshot) -> None:
        if self._gpus is not None and self.phase is not None:
            self.phase.gpu[snapshot.t] = self._gpus.read()

    def before_measure(self) -> None:
        if self.interval <= 0:
            return
        self._wait_for_scraper()
        if self.pid is not None:
            self._usage.append(tree_usage(self.pid))
        try:
            self.phase = Phase(scrape(self.server.client, self.server.url))
        except ScrapeError as exc:
            self.unavailable = str(exc)
            self._say(f"no server metrics for this point: {exc}; going on without them")
            self._close()
            return
        self._read_gpus(self.phase.start)
        if self._process is not None:
            self._process.go()

    def _wait_for_scraper(self) -> None:
        """Until the scraper process has started up (before the phase, so it samples all of it)."""
        if self._process is None:
            return
        waited = time.monotonic()
        if not self._process.ready():
            self._say("the /metrics scraper process did not start in time; its samples may begin late")
        elif time.monotonic() - waited > 1.0:
            self._say(f"waited {time.monotonic() - waited:.1f} s for the /metrics scraper process to start")

    def after_measure(self) -> None:
        if self.pid is not None and self._usage:
            self._usage.append(tree_usage(self.pid))
        if self.phase is None:
            return
        self.phase.scraped, self.phase.errors = self._close()
        try:
            self.phase.end = scrape(self.server.client, self.server.url)
        except ScrapeError as exc:
            self.phase.errors.append(f"the scrape at the end of the phase: {exc}")
        else:
            self._read_gpus(self.phase.end)

    def _close(self) -> tuple[list[Snapshot], list[str]]:
        """Stop the scraper process (idempotent) and read what it scraped."""
        scraped, errors = self._process.stop() if self._process is not None else ([], [])
        if self._process is not None and self.phase is not None:
            self.phase.gpu.update(self._process.gpu)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        return scraped, errors

    def record(
        self, metrics: BenchmarkMetrics, records: Sequence[RequestRecord], series_file: Path, root: Path
    ) -> dict[str, Any] | None:
        """The point's ``server_metrics`` (None when off), its time series written to
        ``series_file``; warnings and a partial phase said on the progress writer."""
        if self.interval <= 0:
            return None
        if self._gpus is not None:
            self._gpus.close()
            self._gpus = None
        process = self._process_figures()
        if self.phase is None:
            return {"status": "unavailable", "reason": self.unavailable, **({"figures": process} if process else {})}
        result = phase_record(self.phase, metrics, records, self.interval)
        result["figures"].update(process)
        try:
            atomic_write_text(series_file, series_csv(self.phase.series(), self.phase.gpu))
            result["series_file"] = str(series_file.relative_to(root))
        except (OSError, ValueError) as exc:
            result["series_file"] = None
            self._say(f"could not write the server metrics' time series: {exc}")
        if self.timeline is not None:
            result["timeline_file"] = self._draw(records, timeline_path(series_file), root, self.timeline)
        if result["reason"]:
            self._say(f"server metrics are partial: {result['reason']}")
        for warning in result["warnings"]:
            self._say(f"server metrics: {warning}")
        return result

    def _draw(self, records: Sequence[RequestRecord], path: Path, root: Path, title: str) -> str | None:
        """The timeline PNG (after the point's files: a plot never costs a measurement)."""
        assert self.phase is not None
        start = self.phase.start.t
        sends = [r.send_time - start for r in records if not r.warmup and r.send_time >= start]
        title = f"{title}: the server{' and its GPUs' if self.phase.gpu else ''} during the measured phase"
        try:
            drawn = draw_timeline(path, series_rows(self.phase.series(), self.phase.gpu), sends, title)
        except (OSError, ValueError) as exc:
            self._say(f"could not draw the point's timeline: {exc}")
            return None
        return str(drawn.relative_to(root)) if drawn is not None else None

    def _process_figures(self) -> dict[str, float]:
        """The local server tree's CPU seconds and peak RSS over the phase (empty for others)."""
        if len(self._usage) < 2:
            return {}
        rss = self._process.rss if self._process is not None else []
        figures = process_figures(self._usage[0], self._usage[-1], rss)
        return {f"process_{k}": v for k, v in figures.items()}

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(f"[vllm-bench] {line}")


TIMELINE_SUFFIX = ".timeline.png"


def timeline_path(series_file: Path) -> Path:
    """``points/<point>.timeline.png`` beside ``points/<point>.metrics.csv``."""
    return series_file.with_name(series_file.name.removesuffix(".metrics.csv") + TIMELINE_SUFFIX)


def series_path(store: ResultsStore, point_id: str, repeat: Repeat) -> Path:
    """``points/<point>.metrics.csv``, or ``points/repeats/<point>.r<K>.metrics.csv`` for a
    repeat: beside the point's files, out of the ``points/*.json`` glob."""
    if repeat.repeated:
        return store.repeat_path(point_id, repeat.index).with_suffix(".metrics.csv")
    return store.points_dir / f"{safe_name(point_id)}.metrics.csv"
