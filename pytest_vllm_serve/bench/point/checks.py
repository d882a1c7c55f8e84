"""A point's checks: what is refused before any load (with its fix), and how a point that was
cut short fails after what it measured is saved."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vllm_serve.bench.loadgen.generator import LoadResult
from pytest_vllm_serve.bench.metrics import TokenCounter, series_samples
from pytest_vllm_serve.bench.point.hooks import MeasureHook
from pytest_vllm_serve.bench.settings import RECORDABLE
from pytest_vllm_serve.bench.workloads import Workload
from pytest_vllm_serve.errors import ConfigError, ServerDiedError
from pytest_vllm_serve.serving.running import RunningServer


def check_workload(workload: Any) -> None:
    if not isinstance(workload, Workload):
        raise ConfigError(
            f"vllm_bench.run(): {type(workload).__name__} is not a workload (it needs name, prompts(), "
            "length_limit() and params()).\n  fix: subclass pytest_vllm_serve.bench.workloads.Workload, "
            "which gives the last two defaults"
        )


def check_hooks(hooks: list[Any]) -> None:
    strangers = [type(hook).__name__ for hook in hooks if not isinstance(hook, MeasureHook)]
    if strangers:
        raise ConfigError(
            f"vllm_bench.hooks: {', '.join(strangers)} is not a measure hook (it needs before_measure(), "
            "after_measure() and in_process).\n  fix: subclass pytest_vllm_serve.bench.point.MeasureHook, "
            "which defaults in_process to False"
        )


def fail_if_dead(server: RunningServer) -> None:
    try:
        server.check_alive()
    except ServerDiedError as exc:
        pytest.fail(str(exc), pytrace=False)


def partial_cause(load: LoadResult, died: str | None) -> str | None:
    """Why the point was cut short: the server died, or stalled; None for a whole point."""
    if died:
        return f"the server died: {died}"
    return load.stopped


def fail_cut_short(server: RunningServer, died: str | None, stopped: str | None) -> None:
    """Fail a point that was cut short (what it measured is saved by now), naming why."""
    if died:
        try:
            server.check_alive()  # fails with the dead process and the server's log tail
        except ServerDiedError as exc:
            pytest.fail(f"the server died during this point; what was measured is saved.\n{exc}", pytrace=False)
    if stopped:
        pytest.fail(
            f"{stopped}; the point stopped there, and what was measured is saved (marked partial).\n"
            "  fix: look at the server's log and state (a frozen or swapping host, a hung engine); "
            "a server that is slow but alive answers /health and is waited for; "
            "--vllm-stall-timeout 0 turns this check off",
            pytrace=False,
        )


def server_max_model_len(server: RunningServer) -> int | None:
    try:
        data = server.client.get("/v1/models").json()["data"]
    except Exception:
        return None
    for model in data:
        if model.get("id") == server.model and isinstance(model.get("max_model_len"), int):
            return model["max_model_len"]
    return None


def series_values(load: LoadResult, name: str, count_tokens: TokenCounter | None = None) -> list[float]:
    if name not in RECORDABLE:
        raise ConfigError(f"--vllm-record-metric {name!r}: use one of {', '.join(RECORDABLE)}")
    return series_samples(load.records, name, count_tokens)
