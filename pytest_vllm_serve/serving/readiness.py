"""Waiting for a server: /health, then /v1/models listing the served model.

The wait is a small strategy with an injectable clock and sleep, so its
behaviour (sleep on every non-ready answer, fail at once when the process
dies, time out with the log tail) is unit-tested without a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from pytest_vllm_serve.errors import ConfigError, ServerStartError, format_log_tail
from pytest_vllm_serve.serving.known_causes import describe_cause, find_known_cause

LOG_TAIL_LINES = 50
CAUSE_SEARCH_LINES = 600


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def served_models(payload: object) -> list[str] | None:
    """Model ids from a /v1/models body, or None if it is not an OpenAI model list."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return None
    return [model for m in payload["data"] if isinstance(m, dict) and isinstance(model := m.get("id"), str)]


@dataclass
class ReadinessProbe:
    """Polls one server until it is ready, its process dies, or time runs out."""

    base_url: str
    model: str | None  # None: accept whatever model the server lists first
    api_key: str | None = None
    timeout: float = 600.0
    interval: float = 0.5
    is_dead: Callable[[], str | None] = lambda: None
    log_tail: Callable[[int], list[str]] = lambda n: []
    log_name: str = "the server log"
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    transport: httpx.BaseTransport | None = None  # injectable for tests
    last_status: str = field(default="no answer yet", init=False)

    def _check_once(self, client: httpx.Client) -> str | None:
        """One poll. Returns the served model id when ready, else None."""
        try:
            health = client.get("/health")
        except httpx.HTTPError as exc:
            self.last_status = f"/health: {type(exc).__name__}"
            return None
        if health.status_code != 200:
            self.last_status = f"/health answered {health.status_code}"
            return None
        try:
            models = client.get("/v1/models")
        except httpx.HTTPError as exc:
            self.last_status = f"/v1/models: {type(exc).__name__}"
            return None
        if models.status_code != 200:
            self.last_status = f"/v1/models answered {models.status_code}"
            return None
        try:
            ids = served_models(models.json())
        except ValueError:
            ids = None
        if not ids:
            self.last_status = "/v1/models lists no model yet"
            return None
        if self.model is None:
            return ids[0]
        if self.model in ids:
            return self.model
        self.last_status = f"/v1/models lists {ids}, not {self.model!r}"
        return None

    def wait(self) -> str:
        deadline = self.clock() + self.timeout
        client = httpx.Client(
            base_url=self.base_url, headers=auth_headers(self.api_key), timeout=10.0, transport=self.transport
        )
        with client:
            while True:
                dead = self.is_dead()
                if dead:
                    tail = self.log_tail(LOG_TAIL_LINES)
                    searched = self.log_tail(CAUSE_SEARCH_LINES)  # the root cause may be further up
                    raise ServerStartError(
                        f"the vLLM server died during startup: {dead}.\n"
                        + describe_cause(searched)
                        + format_log_tail(tail, self.log_name)
                        + (
                            ""
                            if find_known_cause(searched)
                            else "\n  fix: read the log above; a bad --vllm-serve-args flag, a model that does not "
                            "fit, or a missing dependency are the usual causes"
                        )
                    )
                ready = self._check_once(client)
                if ready is not None:
                    return ready
                if self.clock() >= deadline:
                    raise ServerStartError(
                        f"the vLLM server at {self.base_url} was not ready after {self.timeout:g} s "
                        f"(last answer: {self.last_status}).\n"
                        f"{format_log_tail(self.log_tail(LOG_TAIL_LINES), self.log_name)}\n"
                        "  fix: raise --vllm-startup-timeout if the model is large, or read the log"
                    )
                self.sleep(self.interval)


def check_external(base_url: str, api_key: str | None, timeout: float = 10.0) -> str:
    """Validate a server given with --vllm-url. Returns the first served model id.

    Fails within ``timeout`` seconds with a message that says what is wrong.
    """
    url = base_url.rstrip("/")
    try:
        with httpx.Client(base_url=url, headers=auth_headers(api_key), timeout=timeout) as client:
            response = client.get("/v1/models")
    except httpx.InvalidURL as exc:
        raise ConfigError(
            f"--vllm-url {base_url!r} is not a valid URL ({exc}).\n  fix: use e.g. http://host:8000"
        ) from None
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"--vllm-url {base_url} is unreachable: {type(exc).__name__}: {exc}.\n"
            "  fix: check the host and port, that the server is running, and that this machine "
            "can reach it (e.g. curl URL/v1/models)"
        ) from None
    if response.status_code in (401, 403):
        raise ConfigError(
            f"--vllm-url {base_url} refused /v1/models with {response.status_code}: it needs an API key.\n"
            "  fix: pass --vllm-api-key KEY (or set VLLM_API_KEY)"
        )
    ids = None
    if response.status_code == 200:
        try:
            ids = served_models(response.json())
        except ValueError:
            ids = None
    if not ids:
        snippet = response.text[:200].replace("\n", " ")
        raise ConfigError(
            f"--vllm-url {base_url} is not an OpenAI-compatible server: GET /v1/models answered "
            f"{response.status_code} with {snippet!r}, not a model list.\n"
            "  fix: point --vllm-url at the server's base URL (http://host:port, without /v1)"
        )
    return ids[0]
