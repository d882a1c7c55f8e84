"""A stand-in server starter for the pool's logic: it records what starts and stops, and when."""

from __future__ import annotations

from contextlib import contextmanager

from pytest_vllm_serve.errors import ServerStartError
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.spec import ServerSpec


class FakeStarts:
    """A starter that records what runs when (the pool's logic, without servers)."""

    def __init__(self, fail: set[str] = frozenset()):
        self.events: list[str] = []
        self.fail = fail

    @contextmanager
    def __call__(self, spec: ServerSpec):
        name = spec.args[0] if spec.args else "default"
        if name in self.fail:
            self.events.append(f"fail {name}")
            raise ServerStartError(f"{name} crashed")
        self.events.append(f"start {name}")
        try:
            yield RunningServer(url=f"http://{name}", model="m", spec=spec)
        finally:
            self.events.append(f"stop {name}")
