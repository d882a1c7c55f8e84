"""VllmSession: per-pytest-session state (settings, results dir, server pool).

Turns a test item into a ServerSpec (marker > command line > ini > default) and
a spec into a running server, through the configured launcher.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from .command import check_model, merge_defaults
from .errors import ConfigError
from .launchers.base import Launcher, RunningServer
from .launchers.external import attach
from .launchers.local import LocalLauncher
from .options import BenchSettings, Settings
from .pool import ServerPool
from .results import PointRecord, ResultsStore, load_baseline
from .server import serve
from .spec import MARKER_KEYS, ServerSpec

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
    baseline: dict[str, dict[str, float]] | None = None
    points: list[PointRecord] = field(default_factory=list)  # measured in this process
    plot_files: list[Path] = field(default_factory=list)
    launched: int = 0  # servers this session started (attempts, including failed ones)
    attached: int = 0  # servers given with --vllm-url
    pool: ServerPool = field(init=False)
    _docker: Launcher | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.pool = ServerPool(start=self.start)
        if self.bench.baseline is not None and self.baseline is None:
            self.baseline = load_baseline(self.bench.baseline)

    @property
    def store(self) -> ResultsStore:
        return ResultsStore(self.results_dir)

    @property
    def logs_dir(self) -> Path:
        return self.results_dir / "logs"

    def spec_for(self, item: pytest.Item) -> ServerSpec:
        return spec_from(self.settings, marker_kwargs(item))

    def launcher(self) -> Launcher:
        """The launcher the session's options choose. Each kind lives in launchers/."""
        if self.settings.docker:
            return self.docker_launcher()
        if self.settings.slurm:
            from .launchers.slurm import slurm_launcher

            return slurm_launcher(self.settings, self.logs_dir)
        return LocalLauncher(logs_dir=self.logs_dir, host=self.settings.host, api_key=self.settings.api_key)

    def docker_launcher(self) -> Launcher:
        """One per session: it connects, reaps stale containers and loads the image once."""
        if self._docker is None:
            from .launchers.docker import DockerLauncher

            self._docker = DockerLauncher(
                image=self.settings.docker,
                logs_dir=self.logs_dir,
                host=self.settings.host,
                api_key=self.settings.api_key,
                mounts=self.settings.container_mounts,
                flavor=self.settings.docker_flavor,
                session=str(self.results_dir.resolve()),
            )
        return self._docker

    @contextmanager
    def start(self, spec: ServerSpec) -> Iterator[RunningServer]:
        if self.settings.url:
            self.attached += 1
            with attach(self.settings.url, spec, api_key=self.settings.api_key) as server:
                yield server
            return
        self.launched += 1
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"[vllm] starting {spec.describe()}")
        with serve(
            spec,
            self.launcher(),
            startup_timeout=self.settings.startup_timeout,
            api_key=self.settings.api_key,
            cache_dir=self.settings.cache_dir,
        ) as server:
            if reporter is not None:
                reporter.write_line(
                    f"[vllm] ready in {server.startup_seconds:.1f} s at {server.url} (log: {server.log_path})"
                )
            yield server
