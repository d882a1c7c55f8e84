"""One benchmark point, end to end: the object behind the ``vllm_bench`` fixture.

    prompts (workload) -> load plan -> run_load -> metrics -> results file
    -> pytest-benchmark (extra_info + timing series) -> regression gate

The point's results are written before anything that can fail afterwards
(the all-failed check, the gate), so a measured point is never lost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pytest

from pytest_vllm_serve.bench.client import Prompt, RequestOptions
from pytest_vllm_serve.bench.gates import check_baseline, check_thresholds
from pytest_vllm_serve.bench.loadgen.generator import LoadPlan, LoadResult, auto_processes, run_load
from pytest_vllm_serve.bench.metrics import (
    AllRequestsFailedError,
    BenchmarkMetrics,
    TokenCounter,
    compute_metrics,
    metric_values,
    series_samples,
)
from pytest_vllm_serve.bench.point_files import ResultHead, failed_result_file, server_info, vllm_result_file
from pytest_vllm_serve.bench.schedule import Schedule, target_rate
from pytest_vllm_serve.bench.settings import RECORDABLE, BenchSettings
from pytest_vllm_serve.bench.sinks import pytest_benchmark
from pytest_vllm_serve.bench.sinks.results import Baseline, PointRecord, ResultsStore
from pytest_vllm_serve.bench.stall import StallWatch, health_probe
from pytest_vllm_serve.bench.workloads import LocalTokenizer, Tokenizer, Workload, server_tokenizer
from pytest_vllm_serve.errors import ConfigError, ResultsWriteError, ServerDiedError
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


def _server_max_model_len(server: RunningServer) -> int | None:
    try:
        data = server.client.get("/v1/models").json()["data"]
    except Exception:
        return None
    for model in data:
        if model.get("id") == server.model and isinstance(model.get("max_model_len"), int):
            return model["max_model_len"]
    return None


def _series_values(load: LoadResult, name: str, count_tokens: TokenCounter | None = None) -> list[float]:
    if name not in RECORDABLE:
        raise ConfigError(f"--vllm-record-metric {name!r}: use one of {', '.join(RECORDABLE)}")
    return series_samples(load.records, name, count_tokens)


@runtime_checkable
class MeasureHook(Protocol):
    """Runs around a point's measured phase (``vllm_bench.hooks``): the profilers of
    bench/profiling.py, or your own. Subclass it: ``in_process`` defaults to False."""

    #: True: it sees only this process, so the point runs one client process.
    in_process: bool = False

    def before_measure(self) -> None: ...

    def after_measure(self) -> None: ...


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
    _tokenizer: Tokenizer | None = field(default=None, init=False, repr=False)
    _max_model_len: int | None = field(default=None, init=False, repr=False)
    _used: bool = field(default=False, init=False, repr=False)

    # -- helpers -------------------------------------------------------------------
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            if self.settings.tokenizer is not None:
                self._tokenizer = LocalTokenizer(self.settings.tokenizer)
            else:
                self._tokenizer = server_tokenizer(self.server.client, self.server.model)
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens of a generated text without special tokens: how vLLM counts the output
        of a request whose stream had no usage."""
        return len(self.tokenizer().encode(text))

    def max_model_len(self) -> int | None:
        if self._max_model_len is None:
            self._max_model_len = _server_max_model_len(self.server)
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

    def _progress(self, label: str, started: float) -> Callable[[int, int, int], None]:
        def report(finished: int, failed: int, total: int) -> None:
            if self.progress_writer is not None:
                self.progress_writer(
                    f"[vllm-bench] {label}: {finished}/{total} done, {failed} failed, {time.monotonic() - started:.0f} s"
                )

        return report

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
        """Measure one point: ``workload`` (see workloads.py) sent at ``schedule``.

        In order: check before sending anything, send and measure, compute, save (before
        anything else can fail), record into pytest-benchmark, then gate."""
        self._check_before_load(workload)
        prompts = tuple(workload.prompts(self.tokenizer()))
        plan = self._plan(prompts, schedule, endpoint)
        label = f"{self.node_id.split('::')[-1]} ({schedule.describe()}, {len(prompts)} prompts)"
        started = time.monotonic()
        if self.progress_writer:
            self.progress_writer(f"[vllm-bench] {label}: starting")
        load = self._load(plan, label, started)
        point_params = {
            "workload": workload.name,
            "endpoint": plan.options.endpoint,
            "num_prompts": len(prompts),
            "request_rate": schedule.rate,
            "burstiness": schedule.burstiness,
            "max_concurrency": schedule.max_concurrency,
            "client_processes": plan.processes,
            **workload.params(),
            **(params or {}),
        }
        died = self.server.death()
        partial = self._partial_cause(load, died)
        metrics = self._metrics(load, schedule, suite, point_params, died, partial)
        values = metric_values(metrics)
        if metrics.target_request_rate is not None and math.isfinite(metrics.target_request_rate):
            values.setdefault("target_request_rate", metrics.target_request_rate)
        values["client_cpu_ms_per_request"] = 1000 * load.client_cpu_seconds / max(len(load.records), 1)
        file = self._save(metrics, values, load, plan, suite, point_params, partial)
        self._record_benchmark(load, values, point_params, suite)
        if partial and self.benchmark is not None and not getattr(self.benchmark, "disabled", True):
            self.benchmark.extra_info["partial"] = partial
        outcome = PointResult(self.node_id, metrics, values, load, file)
        self._fail_cut_short(died, load.stopped)  # measured what could be, saved it; now say what happened
        if self.progress_writer:
            self.progress_writer(
                f"[vllm-bench] {label}: {metrics.completed} ok, {metrics.failed} failed, "
                f"{metrics.request_throughput:.2f} req/s, median TTFT {metrics.ttft.median * 1000:.1f} ms "
                f"({time.monotonic() - started:.0f} s)"
            )
        self._gate(outcome)
        return outcome

    # -- the phases of run() -----------------------------------------------------------------
    def _check_before_load(self, workload: Workload) -> None:
        """One point per test, a real workload, a point the server can hold, a live server,
        and a baseline that has what --vllm-fail-on compares: all before any load."""
        if self._used:
            raise ConfigError("vllm_bench.run() measures one point per test; parametrize the test for more points")
        self._used = True
        if not isinstance(workload, Workload):
            raise ConfigError(
                f"vllm_bench.run(): {type(workload).__name__} is not a workload (it needs name, prompts(), "
                "length_limit() and params()).\n  fix: subclass pytest_vllm_serve.bench.workloads.Workload, "
                "which gives the last two defaults"
            )
        strangers = [type(hook).__name__ for hook in self.hooks if not isinstance(hook, MeasureHook)]
        if strangers:
            raise ConfigError(
                f"vllm_bench.hooks: {', '.join(strangers)} is not a measure hook (it needs before_measure(), "
                "after_measure() and in_process).\n  fix: subclass pytest_vllm_serve.bench.point.MeasureHook, "
                "which defaults in_process to False"
            )
        limit = workload.length_limit()
        if limit is not None:
            self.skip_if_too_long(*limit)
        try:
            self.server.check_alive()
        except ServerDiedError as exc:
            pytest.fail(str(exc), pytrace=False)
        base = self._baseline_point()
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
        processes = s.processes or auto_processes(schedule, len(prompts))
        if any(hook.in_process for hook in self.hooks):
            processes = 1  # a client tracer sees only this process
        return LoadPlan(
            base_url=self.server.url,
            options=options,
            prompts=prompts,
            schedule=schedule,
            warmup=s.warmup,
            headers=tuple(self.server.headers.items()),
            processes=processes,
        )

    def _load(self, plan: LoadPlan, label: str, started: float) -> LoadResult:
        s = self.settings
        return run_load(
            plan,
            progress=self._progress(label, started),
            progress_interval=s.progress_interval,
            before_measure=lambda: [hook.before_measure() for hook in self.hooks],
            after_measure=lambda: [hook.after_measure() for hook in reversed(self.hooks)],
            abort=self.server.death,
            stall=StallWatch(s.stall_timeout, health_probe(self.server.url, self.server.headers)),
        )

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
            self._save_failed(suite, point_params, load, str(exc), partial)
            self._fail_cut_short(died, load.stopped)
            pytest.fail(str(exc), pytrace=False)

    def _save(
        self,
        metrics: BenchmarkMetrics,
        values: dict[str, float],
        load: LoadResult,
        plan: LoadPlan,
        suite: str,
        point_params: dict[str, Any],
        partial: str | None,
    ) -> Path:
        result = self._vllm_result(metrics, load, plan.schedule, plan.options, len(plan.prompts))
        result["partial"] = partial
        point = PointRecord(
            id=self.node_id,
            suite=suite,
            params=point_params,
            metrics=values,
            server=self._server_info(),
            partial=partial,
        )
        try:
            file = self.store.save_point(point, result)
        except ResultsWriteError as exc:
            pytest.fail(str(exc), pytrace=False)
        if self.on_point is not None:
            self.on_point(point)
        return file

    @staticmethod
    def _partial_cause(load: LoadResult, died: str | None) -> str | None:
        """Why the point was cut short: the server died, or stalled; None for a whole point."""
        if died:
            return f"the server died: {died}"
        return load.stopped

    def _fail_cut_short(self, died: str | None, stopped: str | None) -> None:
        if died:
            self._fail_dead_server()
        if stopped:
            pytest.fail(
                f"{stopped}; the point stopped there, and what was measured is saved (marked partial).\n"
                "  fix: look at the server's log and state (a frozen or swapping host, a hung engine); "
                "a server that is slow but alive answers /health and is waited for; "
                "--vllm-stall-timeout 0 turns this check off",
                pytrace=False,
            )

    def _fail_dead_server(self) -> None:
        """Fail the point with the dead process and the server's log tail."""
        try:
            self.server.check_alive()
        except ServerDiedError as exc:
            pytest.fail(f"the server died during this point; what was measured is saved.\n{exc}", pytrace=False)

    # -- sinks ------------------------------------------------------------------------
    def _server_info(self) -> dict[str, Any]:
        return server_info(self.server)

    def _vllm_result(self, metrics, load, schedule, options, num_prompts) -> dict[str, Any]:
        head = ResultHead(
            model=self.server.model,
            tokenizer=str(self.settings.tokenizer) if self.settings.tokenizer else self.server.model,
            endpoint=options.endpoint,
            num_prompts=num_prompts,
        )
        return vllm_result_file(head, metrics, load, schedule, self.count_tokens)

    def _save_failed(
        self, suite: str, params: dict[str, Any], load: LoadResult, reason: str, partial: str | None = None
    ) -> None:
        """Keep the evidence of a point where every request failed."""
        point = PointRecord(
            id=self.node_id,
            suite=suite,
            params=params,
            metrics={"completed": 0.0, "failed": float(len(load.records))},
            server=self._server_info(),
            partial=partial,
        )
        self.store.save_point(point, failed_result_file(load, reason, partial))

    def _record_benchmark(self, load: LoadResult, values: dict[str, float], params: dict[str, Any], suite: str) -> None:
        pytest_benchmark.record(
            self.benchmark,
            values,
            params,
            suite,
            self.settings.record_metric,
            _series_values(load, self.settings.record_metric, self.count_tokens),
        )

    def _baseline_point(self) -> dict[str, float] | None:
        if not self.settings.fail_on or self.baseline is None:
            return None
        return self.baseline.get(self.node_id)

    def _gate(self, outcome: PointResult) -> None:
        thresholds = self.settings.fail_on
        if not thresholds or self.baseline is None:
            return
        base = self._baseline_point()
        if base is None:
            cause = self.baseline.partial.get(self.node_id)
            why = f"the baseline of {self.node_id} is partial ({cause})" if cause else f"no baseline for {self.node_id}"
            if self.progress_writer:
                self.progress_writer(f"[vllm-bench] {why}; not gated")
            return
        violations = check_thresholds(base, outcome.values, thresholds)
        outcome.violations = [v.message for v in violations]
        if violations:
            pytest.fail("regression against --vllm-baseline:\n  " + "\n  ".join(outcome.violations), pytrace=False)
