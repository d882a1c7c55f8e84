"""A server container once it runs: the thread that copies its output into the
server's log file, its state and teardown, and the watchdog that removes it if
pytest dies first.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vllm_serve.serving.known_causes import PORT_RACE_LINES, lost_port_race
from pytest_vllm_serve.serving.launchers.base import read_tail
from pytest_vllm_serve.serving.launchers.docker.containers import connect, remove
from pytest_vllm_serve.serving.procs import spawn_detached
from pytest_vllm_serve.serving.readiness import LOG_TAIL_LINES

if TYPE_CHECKING:
    import docker


class LogPump(threading.Thread):
    """Copies a container's output into its log file until the container stops.

    It has its own engine connection, so the long-lived log stream never shares
    one with the launcher's calls.
    """

    def __init__(self, container_id: str, log_path: Path):
        super().__init__(name=f"docker-logs-{container_id[:12]}", daemon=True)
        self.container_id = container_id
        self.log_path = log_path

    def run(self) -> None:
        import docker

        try:
            client = docker.from_env()
            try:
                with open(self.log_path, "ab") as log:
                    for chunk in client.api.logs(self.container_id, stream=True, follow=True):
                        log.write(chunk)
                        log.flush()
            finally:
                client.close()
        except Exception:  # the container or the engine went away: the log ends here
            pass


@dataclass
class DockerProcess:
    """A server container, the thread that copies its logs and the watchdog that guards it."""

    client: docker.DockerClient
    container: docker.models.containers.Container
    url: str
    command: list[str]
    log_path: Path
    served_name: str
    image: str
    stop_timeout: float = 20.0
    watchdog: subprocess.Popen[bytes] | None = None
    pump: LogPump | None = None
    _stopped: bool = field(default=False, init=False)
    _state: dict[str, object] = field(default_factory=dict, init=False)  # the container's State

    def poll(self) -> str | None:
        import docker

        if self._state.get("Status") in ("exited", "dead", "removed"):
            return self._describe_end()
        try:
            self.container.reload()
        except docker.errors.NotFound:
            self._state = {"Status": "removed"}
            return self._describe_end()
        except docker.errors.DockerException as exc:
            return f"the Docker engine stopped answering about container {self.container.short_id}: {exc}"
        self._state = dict(self.container.attrs.get("State") or {})
        if self._state.get("Status") in ("exited", "dead"):
            return self._describe_end()
        return None

    def _describe_end(self) -> str:
        name = f"container {self.container.short_id} ({self.image})"
        status = self._state.get("Status")
        if status == "removed":
            return f"{name} was removed"
        end = f"{name} exited with code {self._state.get('ExitCode')}"
        if self._state.get("OOMKilled"):
            end += " (killed: out of memory)"
        if self._state.get("Error"):
            end += f": {self._state['Error']}"
        return end

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        if self.pump is not None and self.poll() is not None:
            self.pump.join(timeout=2)  # let the last lines land
        return read_tail(self.log_path, lines)

    def lost_port_race(self) -> bool:
        if self.poll() is None:
            return False
        return lost_port_race(self.log_tail(PORT_RACE_LINES))

    def mark_ready(self) -> None:
        """Nothing to record: the container's state says whether it runs."""

    def stop(self) -> None:
        import docker

        if self._stopped:
            return
        self._stopped = True
        try:
            self.container.stop(timeout=int(self.stop_timeout))
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException:
            pass  # removal below kills it anyway
        try:
            remove(self.client, self.container.id)
        finally:
            if self.pump is not None:
                self.pump.join(timeout=5)
            if self.watchdog is not None:
                self.watchdog.kill()
                self.watchdog.wait()

    def ids(self) -> dict[str, object]:
        return {"container": self.container.short_id, "image": self.image}


def start_watchdog(owner_pid: int, container_name: str) -> subprocess.Popen[bytes]:
    """A detached process that removes the container if ``owner_pid`` dies first."""
    return spawn_detached("pytest_vllm_serve.serving.reaper", "docker", str(owner_pid), container_name)


def stop_container(ids: dict[str, object]) -> None:
    """Stop and remove a server's container from its ids alone (another process started it)."""
    client = connect()
    try:
        container_id = str(ids["container"])
        try:
            client.api.stop(container_id, timeout=20)
        except Exception:
            pass  # removal below kills it anyway
        remove(client, container_id)
    finally:
        client.close()
