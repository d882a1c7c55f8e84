"""The composition root: one VllmSession per pytest process, built from the settings.

Its parts, one module each: ``specs`` (a test item's ServerSpec), ``profiling`` (what the
profiling options add to a launch), ``launchers`` (which launcher the options choose),
``starts`` (starting and attaching servers, counted and announced), ``terminal`` (lines
past pytest's capture). Only the plugin imports this package.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from pytest_vllm_serve.bench.prefix_cache import DEV_MODE_ENV
from pytest_vllm_serve.bench.sinks.baseline import Baseline, load_baseline
from pytest_vllm_serve.bench.sinks.results import PointRecord, ResultsStore
from pytest_vllm_serve.config import BenchSettings, Settings
from pytest_vllm_serve.serving.launchers.base import Launcher
from pytest_vllm_serve.serving.pool import Pool, RegistryPool, ServerPool
from pytest_vllm_serve.serving.registry import ServerRegistry
from pytest_vllm_serve.serving.spec import ServerSpec
from pytest_vllm_serve.session.launchers import Launchers
from pytest_vllm_serve.session.profiling import ProfilingWiring
from pytest_vllm_serve.session.report import SessionReport, write_session_info
from pytest_vllm_serve.session.specs import MARKER, spec_for
from pytest_vllm_serve.session.starts import ServerStarts
from pytest_vllm_serve.session.terminal import write_line

__all__ = ["MARKER", "VllmSession", "new_session_dir"]


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


@dataclass
class VllmSession:
    """Per-pytest-process state: settings, results dir, the server pool and what was measured."""

    config: pytest.Config
    settings: Settings
    results_dir: Path
    bench: BenchSettings = field(default_factory=BenchSettings)
    baseline: Baseline | None = None
    points: list[PointRecord] = field(default_factory=list)  # measured in this process
    plot_files: list[Path] = field(default_factory=list)
    report_file: Path | None = None
    profiling: ProfilingWiring = field(init=False)
    report: SessionReport = field(init=False)
    starts: ServerStarts = field(init=False)
    pool: Pool = field(init=False)

    def __post_init__(self) -> None:
        self.profiling = ProfilingWiring(self.settings, self.results_dir)
        # the prefix-cache reset needs vLLM's dev-mode routes on the servers this session launches
        dev_mode = DEV_MODE_ENV if self.bench.reset_prefix_cache != "off" else {}
        launchers = Launchers(self.settings, self.results_dir, self.profiling, extra_env=dev_mode)
        self.starts = ServerStarts(self.settings, launchers, partial(write_line, self.config))
        self.pool = self._make_pool()
        self.report = SessionReport(self.results_dir, partial(write_line, self.config))
        if self.bench.baseline is not None and self.baseline is None:
            self.baseline = load_baseline(self.bench.baseline)

    # -- who this process is -------------------------------------------------------------
    @property
    def worker_id(self) -> str | None:
        """The pytest-xdist worker this process is, if any."""
        workerinput = getattr(self.config, "workerinput", None)
        return workerinput.get("workerid") if workerinput else None

    @property
    def owner_pid(self) -> int:
        """The process whose death must stop shared servers: the xdist controller."""
        workerinput = getattr(self.config, "workerinput", None) or {}
        return int(workerinput.get("vllm_controller_pid", os.getpid()))

    # -- where servers live --------------------------------------------------------------
    @property
    def shared_registry_dir(self) -> Path:
        return self.results_dir / "servers"

    @property
    def reuse_registry_dir(self) -> Path:
        return self.settings.results_root / "reusable-servers"

    def _make_pool(self) -> Pool:
        """Servers kept across sessions (--vllm-reuse), shared by xdist workers, or this process's own."""
        if self.settings.url is None and self.settings.reuse:
            return self._registry_pool(ServerRegistry(self.reuse_registry_dir), owner_pid=None)
        if self.settings.url is None and self.worker_id and not self.settings.per_worker:
            return self._registry_pool(ServerRegistry(self.shared_registry_dir), owner_pid=self.owner_pid)
        return ServerPool(
            start=lambda spec: self.starts.owned(spec, os.getpid()),
            max_servers=self.settings.max_servers,
            restart_on_crash=self.settings.restart_on_crash,
        )

    def _registry_pool(self, registry: ServerRegistry, owner_pid: int | None) -> RegistryPool:
        return RegistryPool(
            registry,
            start_detached=lambda spec: self.starts.detached(spec, owner_pid, registry.root),
            attach=self.starts.attach_existing,
            name=self.worker_id or f"pid {os.getpid()}",
            api_key=self.settings.api_key,
            say=self.starts.say,
        )

    @property
    def launched(self) -> int:
        return self.starts.launched

    @property
    def attached(self) -> int:
        return self.starts.attached

    def launcher(self) -> Launcher:
        """The launcher for servers this process owns (its death stops them)."""
        return self.starts.launchers.for_owner(os.getpid())

    def free_devices(self) -> None:
        """Stop this process's running servers (an offline engine needs their devices)."""
        self.pool.release_devices()

    def stop_shared_servers(self) -> list[str]:
        """The xdist controller's teardown of the servers its workers shared."""
        if self.worker_id is not None or not self.shared_registry_dir.exists():
            return []
        return ServerRegistry(self.shared_registry_dir).stop_all()

    # -- where results go ----------------------------------------------------------------
    def start_results(self) -> None:
        """The session's header for its report (session.json); the xdist controller's, or
        a lone process's."""
        if self.worker_id is None:
            try:
                write_session_info(self.results_dir, self.bench)
            except OSError as exc:
                write_line(self.config, f"vllm: session.json not written: {exc}")

    def record_point(self, point: PointRecord) -> None:
        """A point was saved: keep it, and rewrite report.html when it is due."""
        self.points.append(point)
        self.report.after_point()

    def finish_results(self) -> None:
        """The session's last report.html (the xdist controller's, or a lone process's)."""
        if self.worker_id is None and self.store.points_dir.exists():
            self.report_file = self.report.write()

    @property
    def store(self) -> ResultsStore:
        return ResultsStore(self.results_dir)

    @property
    def logs_dir(self) -> Path:
        return self.results_dir / "logs"

    def spec_for(self, item: pytest.Item) -> ServerSpec:
        return spec_for(self.settings, item)

    def check_profiling(self) -> None:
        self.profiling.check()
