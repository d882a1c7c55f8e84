"""A directory of running servers that several processes can share.

One JSON state file per spec key, written under a per-key file lock. It backs
two features:

* pytest-xdist: the first worker that needs a spec starts its server and
  writes the state file; the others attach to it; the controller stops every
  server in the session's registry once all workers are done.
* ``--vllm-reuse``: a persistent registry; a later session whose spec hash
  matches, and whose server process is still alive, attaches instead of
  launching. State files of dead servers are removed when read.

State files never hold the API key or environment values.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock

from pytest_vllm_serve.files import atomic_write_text
from pytest_vllm_serve.redact import redact_argv
from pytest_vllm_serve.serving.launchers.base import read_tail
from pytest_vllm_serve.serving.procs import first_gone, is_alive, terminate_tree
from pytest_vllm_serve.serving.readiness import LOG_TAIL_LINES, auth_headers
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.spec import ServerSpec

#: How long a kept server's /health may take before it counts as not answering.
HEALTH_TIMEOUT = 3.0


@dataclass
class ServerState:
    key: str
    url: str
    model: str
    launcher: str
    pid: int | None  # the server's main process on this machine (local launcher)
    pgid: int | None
    ids: dict[str, Any] = field(default_factory=dict)
    log_path: str | None = None
    command: list[str] = field(default_factory=list)
    spec: str = ""
    started_at: float = field(default_factory=time.time)
    started_by: str = ""
    engine: list[list[Any]] = field(default_factory=list)  # [pid, title, create_time] of vLLM's engine processes

    @classmethod
    def of(cls, server: RunningServer, started_by: str) -> ServerState:
        raw_pid = server.ids.get("pid")
        pid = raw_pid if isinstance(raw_pid, int) else None
        return cls(
            key=server.spec.key(),
            url=server.url,
            model=server.model,
            launcher=server.launcher,
            pid=pid,
            pgid=pid,
            ids=dict(server.ids),
            log_path=str(server.log_path) if server.log_path else None,
            command=redact_argv(server.command),
            spec=server.spec.describe(),
            started_by=started_by,
            engine=[[p, title, started] for p, (title, started) in getattr(server.process, "_engine", {}).items()],
        )

    def alive(self) -> bool:
        return self.pid is None or is_alive(self.pid)

    def dead_process(self) -> str | None:
        """The first process of the server's tree that is gone (the API server, or one of
        vLLM's engine processes), or None while every one of them runs."""
        if self.pid is not None and not is_alive(self.pid):
            return f"process {self.pid} (started by {self.started_by}) is gone"
        return first_gone((pid, title, started) for pid, title, started in self.engine)

    def problem(self, api_key: str | None = None) -> str | None:
        """Why this server cannot be attached to: a dead process of its tree, or no /health."""
        dead = self.dead_process()
        if dead:
            return dead
        try:
            status = httpx.get(f"{self.url}/health", headers=auth_headers(api_key), timeout=HEALTH_TIMEOUT).status_code
        except httpx.HTTPError as exc:
            return f"/health did not answer within {HEALTH_TIMEOUT:g} s ({type(exc).__name__})"
        return None if status == 200 else f"/health answered HTTP {status}"


@dataclass
class AttachedProcess:
    """A server another process started, seen from a process that only uses it."""

    state: ServerState

    @property
    def url(self) -> str:
        return self.state.url

    @property
    def command(self) -> list[str]:
        return self.state.command

    @property
    def log_path(self) -> Path | None:
        return Path(self.state.log_path) if self.state.log_path else None

    @property
    def served_name(self) -> str:
        return self.state.model

    def poll(self) -> str | None:
        return self.state.dead_process()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        return read_tail(self.log_path, lines)

    def lost_port_race(self) -> bool:
        return False

    def mark_ready(self) -> None:
        """Nothing to record: the registry's owner watches the server."""

    def stop(self) -> None:
        """Not ours to stop: the registry's owner does that."""

    def ids(self) -> dict[str, object]:
        return dict(self.state.ids)


def attach_state(state: ServerState, spec: ServerSpec, api_key: str | None) -> RunningServer:
    return RunningServer(
        url=state.url,
        model=state.model,
        spec=spec,
        log_path=Path(state.log_path) if state.log_path else None,
        command=list(state.command),
        launcher=state.launcher,
        ids=dict(state.ids),
        api_key=api_key,
        process=AttachedProcess(state),
    )


@dataclass
class ServerRegistry:
    root: Path

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _state(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def _failure(self, key: str) -> Path:
        return self.root / f"{key}.failed"

    def lock(self, key: str) -> FileLock:
        return FileLock(str(self.root / f"{key}.lock"))

    def read(self, key: str) -> ServerState | None:
        """The live server for ``key``; a stale state file is removed."""
        path = self._state(key)
        try:
            state = ServerState(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if not state.alive():
            path.unlink(missing_ok=True)
            return None
        return state

    def write(self, state: ServerState) -> None:
        atomic_write_text(self._state(state.key), json.dumps(asdict(state), indent=1))
        with FileLock(str(self.root / ".launches.lock")):
            with open(self.root / "launches.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps({"key": state.key, "by": state.started_by, "at": state.started_at}) + "\n")

    def remove(self, key: str) -> None:
        self._state(key).unlink(missing_ok=True)

    def record_replacement(self, state: ServerState, by: str, problem: str) -> None:
        """Keep why ``by`` found a shared server unusable and stopped it (replacements.jsonl)."""
        entry = {"key": state.key, "url": state.url, "started_by": state.started_by, "by": by, "problem": problem}
        with FileLock(str(self.root / ".launches.lock")):
            with open(self.root / "replacements.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps({**entry, "at": time.time()}) + "\n")

    def replacements(self) -> list[dict[str, object]]:
        """Every server a process of the session found unusable and replaced, and why."""
        try:
            lines = (self.root / "replacements.jsonl").read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def record_failure(self, key: str, message: str) -> None:
        atomic_write_text(self._failure(key), message)

    def failure(self, key: str) -> str | None:
        try:
            return self._failure(key).read_text()
        except OSError:
            return None

    def states(self) -> list[ServerState]:
        found = []
        for path in sorted(self.root.glob("*.json")):
            state = self.read(path.stem)
            if state is not None:
                found.append(state)
        return found

    def launches(self) -> int:
        try:
            return sum(1 for line in open(self.root / "launches.jsonl", encoding="utf-8") if line.strip())
        except OSError:
            return 0

    def stop_all(self) -> list[str]:
        """Stop every server in the registry (the owner's teardown). Returns their urls."""
        stopped = []
        for state in self.states():
            with self.lock(state.key):
                stop_state(state)
                self.remove(state.key)
                stopped.append(state.url)
        return stopped


def stop_state(state: ServerState) -> None:
    """Stop a server from its state alone, whichever process started it."""
    if state.launcher == "local" and state.pid is not None:
        terminate_tree(state.pid, pgid=state.pgid)
    elif state.launcher == "docker":
        from pytest_vllm_serve.serving.launchers.docker.process import stop_container

        stop_container(state.ids)
    elif state.launcher == "slurm":
        from pytest_vllm_serve.serving.launchers.slurm.job import stop_job

        stop_job(state.ids)
    else:
        raise RuntimeError(f"cannot stop a {state.launcher!r} server from its state file")
