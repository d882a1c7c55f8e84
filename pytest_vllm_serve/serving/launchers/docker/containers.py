"""The Docker engine: connecting with clear errors, run labels, and cleanup.

Every container the plugin starts carries labels that name its run: the
session, the spec, and the owner (host, pid and the pid's start time, so a
reused pid is not mistaken for the owner). Two things use them:

- :func:`reap_stale` runs when a Docker launcher starts and removes containers
  whose owner on this host is gone (a crashed or SIGKILLed earlier run);
- :func:`watch` is the watchdog (``python -m pytest_vllm_serve.serving.reaper docker
  OWNER_PID CONTAINER_NAME``) that removes one container as soon as its owner dies.

Only containers with these labels are ever touched; other containers on the
same engine are left alone.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, cast

import psutil

from pytest_vllm_serve.errors import ConfigError

if TYPE_CHECKING:  # the docker SDK is an optional dependency (the "docker" extra)
    import docker

LABEL_PREFIX = "pytest-vllm-serve."
#: Which vLLM an image holds: cpu or gpu (images.flavor_of).
LABEL_FLAVOR = LABEL_PREFIX + "flavor"
LABEL_SESSION = LABEL_PREFIX + "session"
LABEL_SPEC = LABEL_PREFIX + "spec"
LABEL_OWNER_HOST = LABEL_PREFIX + "owner-host"
LABEL_OWNER_PID = LABEL_PREFIX + "owner-pid"
LABEL_OWNER_STARTED = LABEL_PREFIX + "owner-started"

#: How to start an engine, for error messages.
START_ENGINE_HINT = (
    "start one: `sudo dockerd --iptables=false --bridge=none &` (containers use the host network), "
    "or `sudo systemctl start docker`; this project's `bash scripts/services/docker.sh` installs and "
    "starts one. To use another engine, set DOCKER_HOST (e.g. DOCKER_HOST=unix:///run/user/1000/docker.sock)"
)


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _sdk() -> ModuleType:
    try:
        import docker
    except ImportError:
        raise ConfigError(
            "--vllm-docker needs the Docker SDK for Python, which is not installed.\n"
            "  fix: pip install 'pytest-vllm-serve[docker]'"
        ) from None
    return cast(ModuleType, docker)  # the SDK has no type hints: to mypy the module is Any


def connect(timeout: float = 120.0) -> docker.DockerClient:
    """A client for the engine at DOCKER_HOST (default: the local socket), checked with a ping.

    Fails within seconds, naming the problem and how to start an engine.
    """
    sdk = _sdk()
    address = engine_address()
    try:
        client = sdk.from_env(timeout=int(timeout))
        client.ping()
    except sdk.errors.DockerException as exc:
        reason = str(exc)
        if "Permission denied" in reason or "PermissionError" in reason:
            raise ConfigError(
                f"the Docker engine at {address} refused this user: {reason}\n"
                "  fix: add the user to the docker group (sudo usermod -aG docker $USER, then log in again), "
                "or run as root"
            ) from None
        raise ConfigError(f"no Docker engine is running at {address} ({reason}).\n  fix: {START_ENGINE_HINT}") from None
    return client


def has_nvidia_runtime(client: docker.DockerClient) -> bool:
    """True when the engine can hand GPUs to containers (the nvidia runtime is registered)."""
    runtimes = client.info().get("Runtimes") or {}
    return "nvidia" in runtimes


@dataclass(frozen=True)
class Owner:
    """The process a container belongs to. The start time guards against pid reuse."""

    host: str
    pid: int
    started: str

    @classmethod
    def of(cls, pid: int) -> Owner:
        try:
            started = f"{psutil.Process(pid).create_time():.2f}"
        except psutil.NoSuchProcess:
            started = ""
        return cls(host=socket.gethostname(), pid=pid, started=started)

    def labels(self) -> dict[str, str]:
        return {LABEL_OWNER_HOST: self.host, LABEL_OWNER_PID: str(self.pid), LABEL_OWNER_STARTED: self.started}

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> Owner | None:
        try:
            return cls(labels[LABEL_OWNER_HOST], int(labels[LABEL_OWNER_PID]), labels.get(LABEL_OWNER_STARTED, ""))
        except (KeyError, ValueError):
            return None

    def is_gone(self) -> bool:
        """True when the owner has certainly exited. Owners on other hosts are never judged."""
        if self.host != socket.gethostname():
            return False
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
            return bool(self.started) and f"{proc.create_time():.2f}" != self.started
        except psutil.NoSuchProcess:
            return True


def run_labels(owner: Owner | None, session: str, spec_key: str) -> dict[str, str]:
    """Labels naming a container's run; without an owner, no reaper ever removes it."""
    return {**(owner.labels() if owner else {}), LABEL_SESSION: session, LABEL_SPEC: spec_key}


def remove(client: docker.DockerClient, container_id: str) -> bool:
    """Kill and remove a container. False when it was already gone."""
    sdk = _sdk()
    try:
        client.api.remove_container(container_id, force=True)
    except sdk.errors.NotFound:
        return False
    except sdk.errors.APIError as exc:
        if "already in progress" in str(exc) or exc.status_code == 409:
            return True  # another remover got there first
        raise
    return True


def reap_stale(client: docker.DockerClient) -> list[str]:
    """Remove labelled containers whose owner on this host has exited. Returns their names."""
    reaped = []
    for container in client.containers.list(all=True, filters={"label": LABEL_OWNER_PID}):
        owner = Owner.from_labels(container.labels)
        if owner is not None and owner.is_gone() and remove(client, container.id):
            reaped.append(container.name)
    return reaped


def watch(owner_pid: int, name: str, interval: float = 0.5, grace: float = 5.0) -> int:
    """Remove container ``name`` once ``owner_pid`` dies; return when it is gone.

    Started before the container is created, so that no moment exists in which
    a killed owner leaves a container without a watchdog. Once the container has
    been seen, it is followed by id; after the owner dies, removal is retried for
    ``grace`` seconds, in case a create request was still in flight.
    """
    sdk = _sdk()
    client = sdk.from_env(timeout=60)
    owner = Owner.of(owner_pid)
    target = name
    seen = False
    while not (owner.started == "" or owner.is_gone()):
        try:
            target = client.api.inspect_container(target)["Id"]
            seen = True
        except sdk.errors.NotFound:
            if seen:
                return 0  # stopped and removed by its owner
        except sdk.errors.DockerException:
            pass  # the engine is briefly unavailable; keep watching
        time.sleep(interval)
    deadline = time.monotonic() + (0 if seen else grace)
    while True:
        try:
            remove(client, target)
        except sdk.errors.DockerException:
            deadline = max(deadline, time.monotonic() + interval)  # the engine hiccupped; try again
        if time.monotonic() >= deadline:
            return 0
        time.sleep(interval)
