"""Attach to a server that is already running (``--vllm-url``). Launches nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pytest_vllm_serve.serving.readiness import check_external
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.spec import ServerSpec


@contextmanager
def attach(url: str, spec: ServerSpec, api_key: str | None = None, timeout: float = 10.0) -> Iterator[RunningServer]:
    """Check that ``url`` is an OpenAI-compatible server and yield it. Never stops it."""
    base = url.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    model = check_external(base, api_key, timeout=timeout)
    if spec.served_model_name:
        model = spec.served_model_name
    server = RunningServer(url=base, model=model, spec=spec, launcher="external", api_key=api_key)
    try:
        yield server
    finally:
        server.close()
