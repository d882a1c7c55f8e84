"""VllmSession: per-pytest-session state (settings, results dir, server pool).

Turns a test item into a ServerSpec (marker > command line > ini > default) and
a spec into a running server, through the configured launcher.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_vllm_serve.bench.sinks.results import Baseline, PointRecord, ResultsStore, load_baseline
from pytest_vllm_serve.config import BenchSettings, Settings
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.command import check_model, merge_defaults
from pytest_vllm_serve.serving.launchers.base import Launcher
from pytest_vllm_serve.serving.launchers.external import attach
from pytest_vllm_serve.serving.launchers.local import LocalLauncher
from pytest_vllm_serve.serving.placement import GpuLedger
from pytest_vllm_serve.serving.pool import RegistryPool, ServerPool
from pytest_vllm_serve.serving.registry import ServerRegistry, attach_state
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.server import resolve_layout, serve, start_server
from pytest_vllm_serve.serving.spec import MARKER_KEYS, ServerSpec

MARKER = "vllm"


def new_session_dir(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{stamp}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    latest = root / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(path.name)
    except OSError:
        pass
    return path


def marker_kwargs(item: pytest.Item) -> dict[str, Any]:
    """Merged ``vllm`` marker keywords, closest marker winning. Validates the keys."""
    merged: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers(MARKER))):
        if len(mark.args) > 1:
            raise ConfigError(f"{item.nodeid}: @pytest.mark.vllm takes at most one positional argument (the model)")
        if mark.args:
            merged["model"] = mark.args[0]
        unknown = sorted(set(mark.kwargs) - set(MARKER_KEYS))
        if unknown:
            raise ConfigError(
                f"{item.nodeid}: unknown @pytest.mark.vllm keyword(s) {', '.join(unknown)}.\n"
                f"  fix: use only {', '.join(MARKER_KEYS)}"
            )
        merged.update(mark.kwargs)
    return merged


def spec_from(settings: Settings, kwargs: dict[str, Any]) -> ServerSpec:
    marker_args = kwargs.get("args") or ()
    if isinstance(marker_args, str):
        raise ConfigError("@pytest.mark.vllm(args=...) takes a list of strings, e.g. args=['--max-model-len', '2048']")
    model = kwargs.get("model", settings.model)
    check_model(model)

    def pick(key: str) -> Any:
        return kwargs[key] if key in kwargs else getattr(settings, key)

    return ServerSpec.build(
        model=model,
        tp=pick("tp"),
        pp=pick("pp"),
        dp=pick("dp"),
        ep=pick("ep"),
        backend=pick("backend"),
        args=merge_defaults(settings.serve_args, tuple(marker_args)),
        env=kwargs.get("env") or {},
        served_model_name=kwargs.get("served_model_name"),
    )


@dataclass
class VllmSession:
    config: pytest.Config
    settings: Settings
    results_dir: Path
    bench: BenchSettings = field(default_factory=BenchSettings)
    baseline: Baseline | None = None
    points: list[PointRecord] = field(default_factory=list)  # measured in this process
    plot_files: list[Path] = field(default_factory=list)
    launched: int = 0  # servers this session started (attempts, including failed ones)
    attached: int = 0  # servers given with --vllm-url
    pool: ServerPool | RegistryPool = field(init=False)
    _docker: dict[int | None, Launcher] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.pool = self._make_pool()
        if self.bench.baseline is not None and self.baseline is None:
            self.baseline = load_baseline(self.bench.baseline)

    # -- where servers live ----------------------------------------------------------
    @property
    def worker_id(self) -> str | None:
        """The pytest-xdist worker this process is, if any."""
        workerinput = getattr(self.config, "workerinput", None)
        return workerinput.get("workerid") if workerinput else None

    @property
    def owner_pid(self) -> int:
        """The process whose death must stop our servers: the xdist controller for shared servers."""
        workerinput = getattr(self.config, "workerinput", None) or {}
        return int(workerinput.get("vllm_controller_pid", os.getpid()))

    @property
    def shared_registry_dir(self) -> Path:
        return self.results_dir / "servers"

    @property
    def reuse_registry_dir(self) -> Path:
        return self.settings.results_root / "reusable-servers"

    def _make_pool(self):
        if self.settings.url is None and self.settings.reuse:
            return self._registry_pool(ServerRegistry(self.reuse_registry_dir), owner_pid=None)
        if self.settings.url is None and self.worker_id and not self.settings.per_worker:
            return self._registry_pool(ServerRegistry(self.shared_registry_dir), owner_pid=self.owner_pid)
        return ServerPool(
            start=self.start, max_servers=self.settings.max_servers, restart_on_crash=self.settings.restart_on_crash
        )

    def _registry_pool(self, registry: ServerRegistry, owner_pid: int | None) -> RegistryPool:
        def start_detached(spec: ServerSpec) -> RunningServer:
            resolve_layout(spec, self.launcher(owner_pid=owner_pid))  # fails before counting a launch
            self.launched += 1
            self._say(f"[vllm] starting {spec.describe()} (shared through {registry.root})")
            server = start_server(
                spec,
                self.launcher(owner_pid=owner_pid),
                startup_timeout=self.settings.startup_timeout,
                api_key=self.settings.api_key,
                cache_dir=self.settings.cache_dir,
            )
            self._say(f"[vllm] ready in {server.startup_seconds:.1f} s at {server.url} (log: {server.log_path})")
            return server

        def attach_existing(state, spec: ServerSpec) -> RunningServer:
            self.attached += 1
            self._say(f"[vllm] attaching to {state.url} ({spec.short_name}, started by {state.started_by})")
            return attach_state(state, spec, self.settings.api_key)

        return RegistryPool(
            registry,
            start_detached,
            attach_existing,
            name=self.worker_id or f"pid {os.getpid()}",
            api_key=self.settings.api_key,
            say=self._say,
        )

    def _say(self, line: str) -> None:
        """A line on the terminal, also from inside a test's setup (past pytest's capture)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    def free_devices(self) -> None:
        """Stop this session's running servers (an offline engine needs their devices)."""
        if isinstance(self.pool, ServerPool):
            self.pool.close()

    def stop_shared_servers(self) -> list[str]:
        """The xdist controller's teardown of the servers its workers shared."""
        if self.worker_id is not None or not self.shared_registry_dir.exists():
            return []
        return ServerRegistry(self.shared_registry_dir).stop_all()

    @property
    def store(self) -> ResultsStore:
        return ResultsStore(self.results_dir)

    @property
    def logs_dir(self) -> Path:
        return self.results_dir / "logs"

    def spec_for(self, item: pytest.Item) -> ServerSpec:
        return spec_from(self.settings, marker_kwargs(item))

    def launcher(self, owner_pid: int | None = -1) -> Launcher:
        """The launcher the session's options choose. Each kind lives in launchers/.

        ``owner_pid``: whose death stops the servers (-1: this process; None: nobody,
        for servers kept across sessions with --vllm-reuse).
        """
        if self.settings.slurm:  # with --vllm-docker too: the job runs the image on every node
            from pytest_vllm_serve.serving.launchers.slurm.launcher import slurm_launcher

            args, env, _ = self.profiling_launch(in_container=bool(self.settings.docker), nsys_here=False)
            return slurm_launcher(
                self.settings,
                self.logs_dir,
                owner_pid=os.getpid() if owner_pid == -1 else owner_pid,
                extra_args=tuple(args),
                extra_env=env,
                nsys_dir=self.results_dir / "profiles" / "nsys"
                if self.settings.nsys
                else None,  # per node, on the node
            )
        if self.settings.docker:
            return self.docker_launcher(os.getpid() if owner_pid == -1 else owner_pid)
        args, env, wrap = self.profiling_launch()
        return LocalLauncher(
            logs_dir=self.logs_dir,
            host=self.settings.host,
            api_key=self.settings.api_key,
            owner_pid=os.getpid() if owner_pid == -1 else owner_pid,
            gpu_ledger=GpuLedger(self.settings.results_root / "gpu-ledger.json"),
            extra_args=tuple(args),
            extra_env=env,
            wrap=tuple(wrap),
        )

    # -- profiling ---------------------------------------------------------------------------
    @property
    def server_trace_dir(self) -> Path:
        """Where launched servers write torch profiler traces (moved per test afterwards)."""
        return self.results_dir / "profiles" / ".server-traces"

    @property
    def profiling(self) -> bool:
        return self.settings.profile or self.settings.nsys

    def profiling_launch(
        self, in_container: bool = False, nsys_here: bool = True
    ) -> tuple[list[str], dict[str, str], list[str]]:
        """(serve args, env, command prefix) that the profiling options add to a launch.
        ``nsys_here=False``: the launcher wraps in nsys itself, elsewhere (SLURM nodes)."""
        if not self.profiling:
            return [], {}, []
        from pytest_vllm_serve.bench.profiling import profiler_serve_config
        from pytest_vllm_serve.serving.hardware import find_vllm
        from pytest_vllm_serve.serving.nsys import nsys_command

        install = None if in_container else find_vllm()  # an image's vLLM: assume a current one
        profiler = "torch" if self.settings.profile else "cuda"  # nsys captures between CUDA profiler calls
        trace_dir = self.server_trace_dir.resolve()
        args, env = profiler_serve_config(
            install.version if install else None, trace_dir, self.settings.profiler_config, profiler
        )
        wrap: list[str] = []
        if self.settings.nsys and nsys_here:
            output = (self.results_dir / "profiles" / "nsys").resolve() / "profile-node0"
            wrap = nsys_command(output, binary="nsys" if in_container else None)
        return args, env, wrap

    def check_profiling(self) -> None:
        """Bad profiling setups fail before anything launches."""
        from pytest_vllm_serve.bench.profiling import ClientTracer, check_trace_dir
        from pytest_vllm_serve.serving.nsys import nsys_command

        if self.settings.profile and self.settings.nsys and self.settings.profiler_config is None:
            raise ConfigError(
                "--vllm-profile (torch profiler) and --vllm-nsys (CUDA profiler under nsys) cannot drive one server "
                "at once: vLLM runs one profiler.\n  fix: use one of them per run"
            )
        if self.profiling:
            check_trace_dir(self.server_trace_dir)
        if self.settings.nsys and not (self.settings.url or self.settings.slurm or self.settings.docker):
            nsys_command(self.results_dir / "profiles" / "nsys" / "profile-node0")
        if self.settings.viztracer:
            ClientTracer.check_installed()
            check_trace_dir(self.results_dir / "profiles")

    def docker_launcher(self, owner_pid: int | None) -> Launcher:
        """One per session and owner: it connects, reaps stale containers and loads the image once."""
        if owner_pid not in self._docker:
            from pytest_vllm_serve.serving.launchers.docker.launcher import DockerLauncher

            args, env, wrap = self.profiling_launch(in_container=True)
            profiles = self.results_dir.resolve() / "profiles"
            mounts = self.settings.container_mounts + ((f"{profiles}:{profiles}:rw",) if self.profiling else ())
            self._docker[owner_pid] = DockerLauncher(
                image=self.settings.docker,
                logs_dir=self.logs_dir,
                host=self.settings.host,
                api_key=self.settings.api_key,
                mounts=mounts,
                flavor=self.settings.docker_flavor,
                session=str(self.results_dir.resolve()),
                owner_pid=owner_pid,
                extra_args=tuple(args),
                extra_env=env,
                wrap=tuple(wrap),
            )
        return self._docker[owner_pid]

    @contextmanager
    def start(self, spec: ServerSpec) -> Iterator[RunningServer]:
        if self.settings.url:
            self.attached += 1
            with attach(self.settings.url, spec, api_key=self.settings.api_key) as server:
                yield server
            return
        launcher = self.launcher()
        resolve_layout(spec, launcher)  # a layout that cannot fit fails here: nothing is launched
        self.launched += 1
        self._say(f"[vllm] starting {spec.describe()}")
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        with serve(
            spec,
            launcher,
            startup_timeout=self.settings.startup_timeout,
            api_key=self.settings.api_key,
            cache_dir=self.settings.cache_dir,
        ) as server:
            if reporter is not None:
                reporter.write_line(
                    f"[vllm] ready in {server.startup_seconds:.1f} s at {server.url} (log: {server.log_path})"
                )
            yield server
