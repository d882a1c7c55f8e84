"""What one benchmark point writes beside its metrics: vLLM's result file (the same keys as
``vllm bench serve --save-result``, plus ours), the server's identity, and the evidence kept
when every request of a point failed. Pure functions of the point's values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pytest_vllm_serve.bench.loadgen.generator import LoadResult
from pytest_vllm_serve.bench.metrics import BenchmarkMetrics, TokenCounter, to_vllm_result
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.serving.running import RunningServer


@dataclass(frozen=True)
class ResultHead:
    """The run's description at the top of vLLM's result file."""

    model: str
    tokenizer: str
    endpoint: str  # "chat" or "completions"
    num_prompts: int


def server_info(server: RunningServer) -> dict[str, Any]:
    """Which server measured the point: its URL, model, launcher, spec and ids (pid, job id...)."""
    info: dict[str, Any] = {
        "url": server.url,
        "model": server.model,
        "launcher": server.launcher,
        "spec": server.spec.describe(),
    }
    info.update(dict(server.ids.items()))
    return info


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
