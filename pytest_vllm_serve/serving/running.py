"""A ready server, as the serving half hands it to tests and to the benchmark half.

``RunningServer`` is the one value the benchmark half takes from the serving half
(docs/architecture.md): a URL, the served model name, the spec and layout it was
started with, and a way to ask whether it is still alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from pytest_vllm_serve.errors import ServerDiedError, format_log_tail
from pytest_vllm_serve.serving.readiness import LOG_TAIL_LINES, auth_headers
from pytest_vllm_serve.serving.spec import Layout, ServerSpec


class ServerProcess(Protocol):
    """A server a launcher started. Not necessarily ready yet."""

    # Read-only here: a launcher may keep these as fields or compute them as properties.
    @property
    def url(self) -> str: ...

    @property
    def command(self) -> list[str]: ...

    @property
    def log_path(self) -> Path | None: ...

    @property
    def served_name(self) -> str: ...

    def poll(self) -> str | None:
        """None while the server runs; otherwise what happened to it."""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]: ...

    def lost_port_race(self) -> bool:
        """True if it died because its port was taken between choice and bind."""

    def stop(self) -> None:
        """Stop it and everything it started. Idempotent."""

    def ids(self) -> dict[str, object]:
        """Identifiers for reports: pid, container id, job id..."""

    def mark_ready(self) -> None:
        """Called once, when the server has answered its readiness probe (a local server
        then records vLLM's engine processes, to notice their death; others do nothing)."""


@dataclass
class RunningServer:
    """A ready server, as handed to tests by the ``vllm_server`` fixture."""

    url: str
    model: str  # the served model name, to put in requests
    spec: ServerSpec
    log_path: Path | None = None
    command: list[str] = field(default_factory=list)
    launcher: str = "local"
    layout: Layout | None = None
    ids: dict[str, object] = field(default_factory=dict)
    startup_seconds: float | None = None
    api_key: str | None = field(default=None, repr=False)
    process: ServerProcess | None = field(default=None, repr=False)
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.api_key)

    @property
    def client(self) -> httpx.Client:
        """An httpx client bound to the server, with the API key when there is one."""
        if self._client is None or self._client.is_closed:
            self._client = httpx.Client(base_url=self.url, headers=self.headers, timeout=120.0)
        return self._client

    def async_client(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, **kwargs)  # type: ignore[arg-type]

    def death(self) -> str | None:
        """None while the server is up, else what happened to it."""
        return self.process.poll() if self.process is not None else None

    def check_alive(self) -> None:
        dead = self.death()
        if dead:
            tail = self.process.log_tail() if self.process else []
            raise ServerDiedError(
                f"the vLLM server {self.url} ({self.spec.short_name}) is gone: {dead}.\n"
                f"{format_log_tail(tail, str(self.log_path or 'the server log'))}"
            )

    def report_text(self) -> str:
        """The spec, layout and exact command, for test reports."""
        lines = [f"url: {self.url}", f"model: {self.model}", f"spec: {self.spec.describe()}"]
        if self.layout is not None:
            lines.append(f"layout: {self.layout.describe()}")
        lines.append(f"launcher: {self.launcher}")
        if self.command:
            from shlex import join

            from pytest_vllm_serve.redact import redact_argv

            lines.append(f"command: {join(redact_argv(self.command))}")
        for key, value in self.ids.items():
            lines.append(f"{key}: {value}")
        if self.log_path is not None:
            lines.append(f"log: {self.log_path}")
        return "\n".join(lines)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
