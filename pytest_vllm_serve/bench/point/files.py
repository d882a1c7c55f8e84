"""What one benchmark point writes: its PointRecord (single or over its repeats), vLLM's result
file (the same keys as ``vllm bench serve --save-result``, plus ours), the server's identity,
and the evidence kept when every request of a point failed. Pure functions of the point's values."""

from __future__ import annotations

import math
import shlex
import statistics
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pytest_vllm_serve.bench.loadgen.generator import LoadPlan, LoadResult
from pytest_vllm_serve.bench.metrics import BenchmarkMetrics, TokenCounter, metric_values, to_vllm_result
from pytest_vllm_serve.bench.repeats import Gathered, summarize
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks.results import PointRecord
from pytest_vllm_serve.bench.stability import stability, stability_reasons
from pytest_vllm_serve.bench.workloads import Workload
from pytest_vllm_serve.redact import redact_argv
from pytest_vllm_serve.serving.running import RunningServer


@dataclass(frozen=True)
class ResultHead:
    """The run's description at the top of vLLM's result file."""

    model: str
    tokenizer: str
    endpoint: str  # "chat" or "completions"
    num_prompts: int


def server_info(server: RunningServer, root: Path | None = None) -> dict[str, Any]:
    """Which server measured the point: its URL, model, launcher, spec, layout, the exact
    serve command (secrets masked), its log (relative to ``root`` when under it) and ids
    (pid, job id...)."""
    info: dict[str, Any] = {
        "url": server.url,
        "model": server.model,
        "launcher": server.launcher,
        "spec": server.spec.describe(),
    }
    if server.layout is not None:
        info["layout"] = server.layout.describe()
    if server.command:
        info["command"] = shlex.join(redact_argv(server.command))
    if server.log_path is not None:
        info["log"] = _relative(server.log_path, root)
    info.update(dict(server.ids.items()))
    return info


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)


def vllm_result_file(
    head: ResultHead,
    metrics: BenchmarkMetrics,
    load: LoadResult,
    schedule: Schedule,
    count_tokens: TokenCounter | None,
) -> dict[str, Any]:
    backend = "openai-chat" if head.endpoint == "chat" else "openai"
    result: dict[str, Any] = {
        "date": datetime.now().strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": backend,
        "backend": backend,
        "label": None,
        "model_id": head.model,
        "tokenizer_id": head.tokenizer,
        "num_prompts": head.num_prompts,
        "request_rate": "inf" if math.isinf(schedule.rate) else schedule.rate,
        "burstiness": schedule.burstiness,
        "max_concurrency": schedule.max_concurrency,
    }
    result.update(to_vllm_result(metrics, load.records, count_tokens=count_tokens))
    result["client_processes"] = load.processes
    result["client_cpu_seconds"] = load.client_cpu_seconds
    return result


def failed_result_file(load: LoadResult, reason: str, partial: str | None) -> dict[str, Any]:
    """The result file of a point where every request failed: how many, and why, by reason."""
    errors: dict[str, int] = {}
    for record in load.records:
        errors[record.error or "ok"] = errors.get(record.error or "ok", 0) + 1
    return {
        "completed": 0,
        "failed": len(load.records),
        "errors_by_reason": errors,
        "error": reason,
        "partial": partial,
    }


def single_point(
    base: PointRecord,
    values: dict[str, float],
    duration: float,
    steady: dict[str, float] | None,
    settings: BenchSettings,
) -> PointRecord:
    """A point measured once: its metrics, and whether it ran long enough to trust."""
    reasons = stability_reasons(duration, settings.min_duration, {}, settings.max_cv, 1)
    return replace(base, metrics=values, stability=stability(reasons), steady_state=steady)


def repeated_point(base: PointRecord, gathered: Gathered, partial: str | None, settings: BenchSettings) -> PointRecord:
    """A point over its repeats: the medians, their intervals and spread, the repeats' files."""
    summary = summarize(gathered.values, gathered.samples, settings.gate_confidence)
    cvs = {key: summary.cv(key) for key in summary.intervals}
    duration = statistics.median(gathered.durations)
    reasons = stability_reasons(duration, settings.min_duration, cvs, settings.max_cv, summary.n)
    return replace(
        base,
        metrics=summary.medians(),
        partial=partial,
        repeats={**summary.to_json(), "files": gathered.files},
        stability=stability(reasons),
        steady_state=gathered.steady_medians(),
    )


def point_file(point: PointRecord, vllm_result: dict[str, Any] | None) -> dict[str, Any]:
    """The point file's content beside its summary: vLLM's result file for a single run; the
    medians and the repeats' files for a repeated point."""
    if point.repeats is None:
        result = dict(vllm_result or {})
    else:
        result = {**point.metrics, "num_repeats": point.repeats["n"], "repeat_files": point.repeats["files"]}
    result.update({"partial": point.partial, "steady_state": point.steady_state, "stability": point.stability})
    return result


def point_params_of(
    workload: Workload, plan: LoadPlan, prefix_cache_reset: str, params: dict[str, Any] | None
) -> dict[str, Any]:
    """The point's params: what was sent, how, and the test's own (they win)."""
    schedule = plan.schedule
    return {
        "workload": workload.name,
        "endpoint": plan.options.endpoint,
        "num_prompts": len(plan.prompts),
        "request_rate": schedule.rate,
        "burstiness": schedule.burstiness,
        "max_concurrency": schedule.max_concurrency,
        "client_processes": plan.processes,
        "prefix_cache_reset": prefix_cache_reset,
        **workload.params(),
        **(params or {}),
    }


def flat_values(metrics: BenchmarkMetrics, load: LoadResult) -> dict[str, float]:
    """The point's flat metrics (the summaries' and the gate's), with the target rate and
    the client's CPU per request."""
    values = metric_values(metrics)
    if metrics.target_request_rate is not None and math.isfinite(metrics.target_request_rate):
        values.setdefault("target_request_rate", metrics.target_request_rate)
    values["client_cpu_ms_per_request"] = 1000 * load.client_cpu_seconds / max(len(load.records), 1)
    return values
