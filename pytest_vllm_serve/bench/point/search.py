"""VllmSloSearch: the highest request rate or max concurrency that meets ``--vllm-slo``.

Every probe is a full benchmark point (its own id ``<test>[rate=4]``, result file, summary
row and plots), measured by a :class:`VllmBench` of its own; :class:`~..slo.SloSearch`
decides what to probe next. With ``--vllm-repeats N`` a probe is measured N times and passes
only when every bound holds over its confidence interval; an undecided probe is measured N
times more (its interval then spans 2N repeats) and counts as failing if still undecided.
The probes stay out of pytest-benchmark; the test records the answer once.

After every probe the search is saved (``slo/<test>.json``, ``slo_search.json``), so a
crash keeps what was measured. Then the answer is gated (``--vllm-fail-on slo_best:-10%``
against a baseline's search), and the test fails when no load met the SLO.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_vllm_serve.bench.point import checks
from pytest_vllm_serve.bench.point.runner import PointResult, VllmBench
from pytest_vllm_serve.bench.repeats import Repeat
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks import pytest_benchmark, slo_search
from pytest_vllm_serve.bench.sinks.baseline import Baseline
from pytest_vllm_serve.bench.slo import SloBound, SloSearch, Verdict, gate_best, parse_slo, probe_verdict
from pytest_vllm_serve.bench.workloads import Workload
from pytest_vllm_serve.errors import ResultsWriteError

#: The point parameter each searched variable sets.
PARAMS = {"rate": "request_rate", "concurrency": "max_concurrency"}


def probe_id(node_id: str, variable: str, value: float) -> str:
    """``t`` -> ``t[rate=4]``; ``t[spec]`` -> ``t[spec-rate=4]``."""
    part = f"{variable}={value:g}"
    if node_id.endswith("]") and "[" in node_id:
        return f"{node_id[:-1]}-{part}]"
    return f"{node_id}[{part}]"


def default_schedule(settings: BenchSettings, variable: str, value: float) -> Schedule:
    """A probe's arrivals: Poisson (or --vllm-burstiness) at the rate, or rate inf capped at the concurrency."""
    if variable == "concurrency":
        return Schedule(rate=math.inf, max_concurrency=int(value), seed=settings.seed)
    return Schedule(rate=value, burstiness=settings.burstiness, seed=settings.seed)


@dataclass
class ProbeOutcome:
    verdict: Verdict
    reasons: list[str]
    result: PointResult | None  # None when the probe failed before it was recorded
    all_failed: bool = False


@dataclass
class SearchResult:
    """What test_slo_search gets back."""

    id: str
    variable: str
    best: float | None
    bracket: tuple[float | None, float | None]
    stopped: str | None
    document: dict[str, Any]
    probes: list[ProbeOutcome] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


@dataclass
class VllmSloSearch:
    """Runs an SLO search against one server (the vllm_slo_search fixture)."""

    settings: BenchSettings
    node_id: str
    #: a VllmBench for one probe (its id) and repeat, sharing the test's server and store
    new_bench: Callable[[str, Repeat], VllmBench]
    root: Any  # the results dir (a Path)
    benchmark: Any = None  # pytest-benchmark's fixture, for the answer
    baseline: Baseline | None = None
    progress_writer: Callable[[str], None] | None = None

    def _say(self, line: str) -> None:
        if self.progress_writer is not None:
            self.progress_writer(f"[vllm-slo] {line}")

    def run(
        self,
        workload_for: Callable[[float], Workload],
        schedule_for: Callable[[float], Schedule] | None = None,
        *,
        slo: str | None = None,
        suite: str = "slo",
    ) -> SearchResult:
        """Search: ``workload_for(value)`` is a probe's workload, ``schedule_for(value)`` its
        arrivals (default: the searched rate, or the concurrency cap at rate inf)."""
        s = self.settings
        bounds = parse_slo(slo)[0] if slo else list(s.slo)
        if not bounds:
            if self.benchmark is not None:
                self.benchmark.skipped = True
            pytest.skip('no SLO to search for: pass --vllm-slo "p99_ttft_ms<=500,p99_tpot_ms<=50" (any result key)')
        variable = s.slo_search
        search = SloSearch(s.slo_start, s.slo_tolerance, s.slo_max_probes, s.slo_max, integer=variable == "concurrency")
        schedule = schedule_for or (lambda value: default_schedule(s, variable, value))
        self._say(f"{self.node_id.split('::')[-1]}: highest {variable} meeting {','.join(map(str, bounds))}")
        outcomes: list[ProbeOutcome] = []
        while (value := search.next_value()) is not None:
            outcome = self._probe(value, bounds, workload_for(value), schedule(value), suite)
            outcomes.append(outcome)
            point = outcome.result.point if outcome.result else None
            search.record(
                value,
                outcome.verdict == "pass",
                point.metrics if point else {},
                id=probe_id(self.node_id, variable, value),
                reasons=outcome.reasons,
                repeats=(point.repeats or {}).get("n") if point else None,
            )
            if outcome.all_failed:
                search.stop(f"every request failed at {variable} {value:g}")
            self._say(
                f"{variable} {value:g}: {'meets' if outcome.verdict == 'pass' else 'misses'} the SLO"
                + (f" ({'; '.join(outcome.reasons)})" if outcome.reasons else "")
            )
            self._save(search, variable, bounds)
        document = self._save(search, variable, bounds)  # with why the search ended
        return self._finish(search, variable, bounds, document, outcomes)

    # -- one probe -----------------------------------------------------------------
    def _probe(
        self, value: float, bounds: list[SloBound], workload: Workload, schedule: Schedule, suite: str
    ) -> ProbeOutcome:
        n = self.settings.repeats
        outcome = self._measure(value, bounds, workload, schedule, suite, range(1, n + 1), n)
        if outcome.verdict == "undecided" and n > 1:
            self._say(
                f"{self.settings.slo_search} {value:g} is undecided ({'; '.join(outcome.reasons)}): "
                f"measuring it {n} times more"
            )
            outcome = self._measure(value, bounds, workload, schedule, suite, range(n + 1, 2 * n + 1), 2 * n)
            if outcome.verdict == "undecided":
                outcome.verdict = "fail"
                outcome.reasons.append(f"still undecided over {2 * n} repeats: counted as failing")
        return outcome

    def _measure(self, value, bounds, workload, schedule, suite, indices, count) -> ProbeOutcome:
        pid = probe_id(self.node_id, self.settings.slo_search, value)
        params = {PARAMS[self.settings.slo_search]: value, "slo_search": self.node_id}
        result = None
        for index in indices:
            bench = self.new_bench(pid, Repeat(index, count))
            try:
                result = bench.run(workload, schedule, suite=suite, params=params)
            except pytest.fail.Exception as exc:
                if bench.server.death():
                    raise  # the server is gone: no probe can be measured
                return ProbeOutcome("fail", [str(exc).splitlines()[0]], None, all_failed=bench.all_failed)
        assert result is not None and result.point is not None  # the last repeat records the point
        point = result.point
        intervals = (point.repeats or {}).get("metrics") if point.repeats else None
        verdict, reasons = probe_verdict(bounds, point.metrics, intervals)
        if point.partial:
            verdict, reasons = "fail", [*reasons, f"cut short: {point.partial}"]
        return ProbeOutcome(verdict, reasons, result)

    # -- the answer ----------------------------------------------------------------
    def _save(self, search: SloSearch, variable: str, bounds: list[SloBound]) -> dict[str, Any]:
        document = {"id": self.node_id, **search.to_json(variable, bounds)}
        try:
            slo_search.save_search(self.root, document)
        except ResultsWriteError as exc:
            pytest.fail(str(exc), pytrace=False)
        return document

    def _finish(self, search, variable, bounds, document, outcomes) -> SearchResult:
        result = SearchResult(self.node_id, variable, search.best, search.bracket, search.stopped, document, outcomes)
        self._record_benchmark(result, outcomes)
        low, high = search.bracket
        self._say(_answer_line(self.node_id, variable, low, high, search.stopped))
        result.violations = self._gate(search.best)
        if low is None:
            first = outcomes[0].reasons if outcomes else []
            pytest.fail(
                f"no {variable} met the SLO {','.join(map(str, bounds))}: {search.stopped or 'every probe failed'}"
                + (f" ({'; '.join(first)})" if first else "")
                + f"\n  fix: start lower with --vllm-slo-start (now {self.settings.slo_start:g}), or loosen --vllm-slo",
                pytrace=False,
            )
        if result.violations:
            pytest.fail("regression against --vllm-baseline:\n  " + "\n  ".join(result.violations), pytrace=False)
        return result

    def _gate(self, best: float | None) -> list[str]:
        thresholds = list(self.settings.slo_fail_on)
        if not thresholds or self.baseline is None:
            return []
        found, base = self.baseline.search_best(self.node_id)
        if not found:
            self._say(f"no baseline SLO search for {self.node_id}; slo_best not gated")
            return []
        if base is None:
            self._say(f"the baseline search of {self.node_id} met the SLO at no load; slo_best not gated")
            return []
        return gate_best(thresholds, base, best)

    def _record_benchmark(self, result: SearchResult, outcomes: list[ProbeOutcome]) -> None:
        """The answer into pytest-benchmark, with the best probe's latency series as timing data."""
        if self.benchmark is None:
            return
        best = next(
            (
                o.result
                for o in outcomes
                if o.result
                and o.result.point
                and o.verdict == "pass"
                and o.result.point.params.get(PARAMS[result.variable]) == result.best
            ),
            None,
        )
        if best is None:
            self.benchmark.skipped = True  # nothing met the SLO: the test fails, with no timing data
            return
        name = self.settings.record_metric
        series = checks.series_values(best.load, name)
        values = {"slo_best": result.best, **{f"best_{k}": v for k, v in best.values.items()}}
        extra = {"slo_search": {k: v for k, v in result.document.items() if k != "probes"}}
        pytest_benchmark.record(self.benchmark, values, {"variable": result.variable}, "slo", name, series, extra)


def _answer_line(node_id: str, variable: str, low: float | None, high: float | None, stopped: str | None) -> str:
    name = node_id.split("::")[-1]
    if low is None:
        return f"{name}: no {variable} met the SLO" + (f" ({stopped})" if stopped else "")
    upper = f", {high:g} did not" if high is not None else ""
    return f"{name}: best {variable} {low:g} (met the SLO{upper})" + (f"; {stopped}" if stopped else "")
