"""VllmBench: one benchmark point's phases, in order (see the package's docstring)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_serve.bench import prefix_cache
from pytest_vllm_serve.bench.client import Prompt, RequestOptions
from pytest_vllm_serve.bench.gates import check_baseline
from pytest_vllm_serve.bench.loadgen.generator import LoadPlan, LoadResult, auto_processes, run_load
from pytest_vllm_serve.bench.metrics import AllRequestsFailedError, BenchmarkMetrics, compute_metrics
from pytest_vllm_serve.bench.noise_gate import Decision
from pytest_vllm_serve.bench.point import checks
from pytest_vllm_serve.bench.point.conversation import conversation_plan, per_turn
from pytest_vllm_serve.bench.point.files import (
    ResultHead,
    failed_result_file,
    flat_values,
    point_file,
    point_params_of,
    repeated_point,
    server_info,
    single_point,
    vllm_result_file,
)
from pytest_vllm_serve.bench.point.gate import PointGate
from pytest_vllm_serve.bench.point.hooks import MeasureHook
from pytest_vllm_serve.bench.point.progress import point_label, progress_reporter
from pytest_vllm_serve.bench.point.tokens import PointTokens
from pytest_vllm_serve.bench.repeats import Repeat, RepeatFiles, samples_of
from pytest_vllm_serve.bench.schedule import Schedule, requests_for_duration, target_rate
from pytest_vllm_serve.bench.server_metrics.recorder import ServerMetricsRecorder, series_path
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks import pytest_benchmark
from pytest_vllm_serve.bench.sinks.baseline import Baseline
from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore
from pytest_vllm_serve.bench.stability import steady_state_values
from pytest_vllm_serve.bench.stall import StallWatch, health_probe
from pytest_vllm_serve.bench.workloads import Tokenizer, Workload
from pytest_vllm_serve.bench.workloads.conversation import ConversationWorkload
from pytest_vllm_serve.errors import ConfigError, ResultsWriteError
from pytest_vllm_serve.serving.running import RunningServer


@dataclass
class PointResult:
    """What a benchmark test gets back from ``vllm_bench.run``."""

    id: str
    metrics: BenchmarkMetrics
    values: dict[str, float]
    load: LoadResult = field(repr=False)
    file: Path | None = None
    violations: list[str] = field(default_factory=list)
    point: PointRecord | None = None  # what was recorded; None for a repeat before the point's last


@dataclass
class VllmBench:
    """Runs benchmark points against one server and records them everywhere."""

    server: RunningServer
    settings: BenchSettings
    store: ResultsStore
    node_id: str
    benchmark: Any = None  # pytest-benchmark's fixture, when it is active
    baseline: Baseline | None = None
    progress_writer: Callable[[str], None] | None = None
    on_point: Callable[[PointRecord], None] | None = None
    hooks: list[MeasureHook] = field(default_factory=list)  # profilers (bench/profiling.py)
    repeat: Repeat = field(default_factory=Repeat)  # which of the point's --vllm-repeats this test is
    _tokens: PointTokens = field(init=False, repr=False)
    _max_model_len: int | None = field(default=None, init=False, repr=False)
    _used: bool = field(default=False, init=False, repr=False)
    prefix_cache_reset: prefix_cache.ResetOutcome = field(default="off", init=False)
    _samples: list[dict[str, list[float]]] = field(default_factory=list, init=False, repr=False)  # per repeat (ms)
    decisions: list[Decision] = field(default_factory=list, init=False)  # the noise-aware gate's, per threshold
    all_failed: bool = field(default=False, init=False)  # every request failed (the test then fails)

    # -- helpers -------------------------------------------------------------------
    def __post_init__(self) -> None:
        self._tokens = PointTokens(self.server, self.settings.tokenizer, self.progress_writer)

    def tokenizer(self) -> Tokenizer:
        return self._tokens.tokenizer()

    def count_tokens(self, text: str) -> int | None:
        """Output tokens of a request without usage (bench/point/tokens.py)."""
        return self._tokens.count(text)

    def max_model_len(self) -> int | None:
        if self._max_model_len is None:
            self._max_model_len = checks.server_max_model_len(self.server)
        return self._max_model_len

    def skip_if_too_long(self, total_len: int, what: str) -> None:
        """Skip (with the reason) a point whose prompt + output exceeds the server's limit."""
        limit = self.max_model_len()
        if limit is not None and total_len > limit:
            if self.benchmark is not None:
                self.benchmark.skipped = True  # tells pytest-benchmark this point did not run
            pytest.skip(
                f"{what} = {total_len} tokens exceeds the server's max model length {limit}; "
                f"serve with --vllm-serve-args '--max-model-len {total_len}' (or more) to run this point"
            )

    # -- the point ------------------------------------------------------------------
    def run(
        self,
        workload: Workload,
        schedule: Schedule = Schedule(),
        *,
        suite: str = "custom",
        params: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> PointResult:
        """Measure one point: ``workload`` (see bench/workloads/) sent at ``schedule``.

        In order: check before sending anything, send and measure, compute, save (before
        anything else can fail), record into pytest-benchmark, then gate."""
        self._check_before_load(workload)
        if isinstance(workload, ConversationWorkload):
            plan = conversation_plan(workload, self.tokenizer(), self.settings, endpoint, self.progress_writer,
                                     lambda prompts: self._plan(prompts, schedule, endpoint))  # fmt: skip
        else:
            plan = self._plan(tuple(workload.prompts(self.tokenizer())), schedule, endpoint)
        label = point_label(self.node_id, schedule, plan, self.repeat)
        started = time.monotonic()
        if self.progress_writer:
            self.progress_writer(f"[vllm-bench] {label}: starting")
        timeline = label if self.settings.plots else None  # the timeline plot's title
        scraper = ServerMetricsRecorder(self.server, self.settings.metrics_interval, self.progress_writer, timeline)
        load = self._load(plan, label, started, scraper)
        point_params = point_params_of(workload, plan, self.prefix_cache_reset, params)
        if plan.send_for:  # the count is what the duration let through
            point_params.update(num_prompts=len(load.records), duration_s=plan.send_for)
        died = self.server.death()
        partial = checks.partial_cause(load, died)
        metrics = self._metrics(load, schedule, suite, point_params, died, partial)
        values = flat_values(metrics, load)
        steady = self._steady_state(load, schedule)
        server = scraper.record(
            metrics, load.records, series_path(self.store, self.node_id, self.repeat), self.store.root
        )
        if self.repeat.repeated:
            file = self._save_repeat(metrics, load, plan, values, steady, partial, server)
            if not self.repeat.last:
                self._skip_benchmark()  # the point is recorded once, by its last repeat
                return self._finish(PointResult(self.node_id, metrics, values, load, file), died, label, started)
            point = self._repeated_point(suite, point_params)
        else:
            point = single_point(
                self._point(suite, point_params, partial), values, load.duration, steady, self.settings
            )
        point.server_metrics = server  # a repeated point's: its last repeat's
        if plan.conversations is not None:
            point.per_turn = per_turn(plan, load, self.settings, self.count_tokens, self.node_id, self.progress_writer)
        file = self._save(point, metrics, load, plan)
        self._record_benchmark(load, point, suite)
        outcome = PointResult(self.node_id, metrics, values, load, file, point=point)
        self._finish(outcome, died, label, started)
        self._gate(outcome, point)
        return outcome

    def _gate(self, outcome: PointResult, point: PointRecord) -> None:
        """--vllm-fail-on against --vllm-baseline (bench/point/gate.py)."""
        gate = PointGate(self.settings, self.baseline, self.node_id, self.progress_writer, self._samples)
        outcome.violations = gate.violations(outcome.values, point)
        self.decisions = gate.decisions
        gate.record(point, self.store)  # the verdict, in the point's file for the report
        if outcome.violations:
            pytest.fail("regression against --vllm-baseline:\n  " + "\n  ".join(outcome.violations), pytrace=False)

    def _finish(self, outcome: PointResult, died: str | None, label: str, started: float) -> PointResult:
        """Say what happened to a point that was cut short (after saving it), then how it went."""
        self._fail_cut_short(died, outcome.load.stopped)
        metrics = outcome.metrics
        if self.progress_writer:
            self.progress_writer(
                f"[vllm-bench] {label}: {metrics.completed} ok, {metrics.failed} failed, "
                f"{metrics.request_throughput:.2f} req/s, median TTFT {metrics.ttft.median * 1000:.1f} ms "
                f"({time.monotonic() - started:.0f} s)"
            )
        return outcome

    # -- the phases of run() -----------------------------------------------------------------
    def _check_before_load(self, workload: Workload) -> None:
        """One point per test, a real workload and hooks, a point the server can hold, a live
        server, and a baseline that has what --vllm-fail-on compares: all before any load."""
        if self._used:
            raise ConfigError("vllm_bench.run() measures one point per test; parametrize the test for more points")
        self._used = True
        checks.check_workload(workload)
        checks.check_hooks(self.hooks)
        limit = workload.length_limit()
        if limit is not None:
            self.skip_if_too_long(*limit)
        checks.fail_if_dead(self.server)
        base = self.baseline.get(self.node_id) if self.settings.fail_on and self.baseline is not None else None
        if base is not None:
            check_baseline(base, self.settings.fail_on, source=f"--vllm-baseline for {self.node_id}")

    def _plan(self, prompts: tuple[Prompt, ...], schedule: Schedule, endpoint: str | None) -> LoadPlan:
        s = self.settings
        options = RequestOptions(
            model=self.server.model,
            endpoint=endpoint or s.endpoint,
            ignore_eos=s.ignore_eos,
            token_ids=s.token_ids,
            timeout=s.request_timeout,
        )
        warmup = s.warmup_for(schedule.max_concurrency, len(prompts))
        send_for, prompts = self._for_duration(prompts, schedule)
        processes = s.processes or auto_processes(schedule, len(prompts))
        if any(hook.in_process for hook in self.hooks):
            processes = 1  # a client tracer sees only this process
        return LoadPlan(
            base_url=self.server.url,
            options=options,
            prompts=prompts,
            schedule=schedule,
            warmup=warmup,
            headers=tuple(self.server.headers.items()),
            processes=processes,
            send_for=send_for,
        )

    def _for_duration(self, prompts: tuple[Prompt, ...], schedule: Schedule) -> tuple[float | None, tuple[Prompt, ...]]:
        """--vllm-duration: the seconds of sending and the prompts, reused in order, to fill them."""
        seconds = self.settings.duration
        count = requests_for_duration(schedule, seconds, len(prompts)) if seconds and prompts else None
        if count is None:
            if seconds and self.progress_writer:
                self.progress_writer(
                    "[vllm-bench] --vllm-duration does not apply to an uncapped rate-inf point or a replay"
                )
            return None, prompts
        return seconds, tuple(prompts[i % len(prompts)] for i in range(count))

    def _load(self, plan: LoadPlan, label: str, started: float, scraper: ServerMetricsRecorder) -> LoadResult:
        s = self.settings
        return run_load(
            plan,
            progress=progress_reporter(self.progress_writer, label, started),
            progress_interval=s.progress_interval,
            before_measure=lambda: self._before_measure(scraper),
            after_measure=lambda: [hook.after_measure() for hook in (scraper, *reversed(self.hooks))],
            abort=self.server.death,
            stall=StallWatch(s.stall_timeout, health_probe(self.server.url, self.server.headers)),
        )

    def _before_measure(self, scraper: ServerMetricsRecorder) -> None:
        """Right before the measured phase (after the warmup): the prefix-cache reset, the hooks,
        then the server metrics' first scrape and scraper."""
        if prefix_cache.wanted(self.settings.reset_prefix_cache, self.server):
            problem = prefix_cache.reset_prefix_cache(self.server)
            self.prefix_cache_reset = "unavailable" if problem else "done"
            if problem and self.progress_writer:
                self.progress_writer(f"[vllm-bench] could not reset the prefix cache: {problem}; going on")
        for hook in self.hooks:
            hook.before_measure()
        scraper.before_measure()

    def _metrics(
        self,
        load: LoadResult,
        schedule: Schedule,
        suite: str,
        point_params: dict[str, Any],
        died: str | None,
        partial: str | None,
    ) -> BenchmarkMetrics:
        """The point's metrics; when every request failed, the records are saved and the test fails."""
        s = self.settings
        try:
            return compute_metrics(
                # the warmups go in to be counted (warmup_excluded) and left out of the rest
                [*load.warmup_records, *load.records],
                load.duration,
                s.percentiles,
                s.goodput,
                target_rate(schedule, load.offsets),
                count_tokens=self.count_tokens,
            )
        except AllRequestsFailedError as exc:
            self.all_failed = True
            failed = self._point(suite, point_params, partial)  # the evidence: how many failed, and why
            failed.metrics = {"completed": 0.0, "failed": float(len(load.records))}
            self.store.save_point(failed, failed_result_file(load, str(exc), partial))
            self._fail_cut_short(died, load.stopped)
            pytest.fail(str(exc), pytrace=False)

    def _steady_state(self, load: LoadResult, schedule: Schedule) -> dict[str, float] | None:
        s = self.settings
        return steady_state_values(
            load.records,
            schedule.max_concurrency,
            percentiles=s.percentiles,
            goodput_slos=s.goodput,
            count_tokens=self.count_tokens,
        )

    def _repeat_files(self) -> RepeatFiles:
        return RepeatFiles(self.store, self.node_id, self.repeat)

    def _save_repeat(
        self,
        metrics: BenchmarkMetrics,
        load: LoadResult,
        plan: LoadPlan,
        values: dict[str, float],
        steady: dict[str, float] | None,
        partial: str | None,
        server: dict[str, Any] | None,
    ) -> Path:
        """Keep this repeat's own result file at once, with its server metrics."""
        result = self._vllm_result(metrics, load, plan.schedule, plan.options, len(plan.prompts))
        result.update(partial=partial, server_metrics=server)
        samples = samples_of(load.records, self.count_tokens)
        try:
            return self._repeat_files().save(result, values, samples, load.duration, steady, partial)
        except ResultsWriteError as exc:
            pytest.fail(str(exc), pytrace=False)

    def _point(self, suite: str, params: dict[str, Any], partial: str | None) -> PointRecord:
        """The point's record before its metrics: its id, suite, params and server."""
        return PointRecord(
            id=self.node_id,
            suite=suite,
            params=params,
            metrics={},
            server=server_info(self.server, self.store.root),
            partial=partial,
        )

    def _repeated_point(self, suite: str, params: dict[str, Any]) -> PointRecord:
        """The point over every repeat, read back from the repeat files (this one included)."""
        files = self._repeat_files()
        gathered = files.gather()
        partial = files.problem(gathered)
        if not gathered.values:
            pytest.fail(f"no complete repeat to summarize: {partial}", pytrace=False)
        self._samples = gathered.samples
        return repeated_point(self._point(suite, params, None), gathered, partial, self.settings)

    def _save(self, point: PointRecord, metrics: BenchmarkMetrics, load: LoadResult, plan: LoadPlan) -> Path:
        """Save the point, before anything else can fail."""
        vllm_result = None
        if point.repeats is None:
            vllm_result = self._vllm_result(metrics, load, plan.schedule, plan.options, len(plan.prompts))
        try:
            file = self.store.save_point(point, point_file(point, vllm_result))
        except ResultsWriteError as exc:
            pytest.fail(str(exc), pytrace=False)
        if self.on_point is not None:
            self.on_point(point)
        return file

    def _fail_cut_short(self, died: str | None, stopped: str | None) -> None:
        checks.fail_cut_short(self.server, died, stopped)

    # -- sinks ------------------------------------------------------------------------
    def _vllm_result(self, metrics, load, schedule, options, num_prompts) -> dict[str, Any]:
        head = ResultHead(
            model=self.server.model,
            tokenizer=str(self.settings.tokenizer) if self.settings.tokenizer else self.server.model,
            endpoint=options.endpoint,
            num_prompts=num_prompts,
        )
        return vllm_result_file(head, metrics, load, schedule, self.count_tokens)

    def _record_benchmark(self, load: LoadResult, point: PointRecord, suite: str) -> None:
        """The point into pytest-benchmark: its metrics, and as timing data the recorded latency
        series (pooled over the repeats of a repeated point)."""
        name = self.settings.record_metric
        pooled = [v / 1000 for sample in self._samples for v in sample.get(name, [])]
        series = pooled if point.repeats is not None else checks.series_values(load, name, self.count_tokens)
        extra = {"repeats": point.repeats, "stability": point.stability}
        pytest_benchmark.record(self.benchmark, point.metrics, point.params, suite, name, series, extra)
        if point.partial and self.benchmark is not None and not getattr(self.benchmark, "disabled", True):
            self.benchmark.extra_info["partial"] = point.partial

    def _skip_benchmark(self) -> None:
        """Tell pytest-benchmark that this test records nothing (a repeat before the point's last)."""
        if self.benchmark is not None:
            self.benchmark.skipped = True
