"""Starting and attaching the session's servers, each counted and announced on the terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_vllm_serve.config import Settings
from pytest_vllm_serve.serving.launchers.external import attach
from pytest_vllm_serve.serving.registry import ServerState, attach_state
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.server import resolve_layout, serve, start_server
from pytest_vllm_serve.serving.spec import ServerSpec
from pytest_vllm_serve.session.launchers import Launchers
from pytest_vllm_serve.session.terminal import Say


@dataclass
class ServerStarts:
    settings: Settings
    launchers: Launchers
    say: Say
    launched: int = 0  # servers this process started (attempts, including failed ones)
    attached: int = 0  # servers it attached to: --vllm-url, or another process's

    @contextmanager
    def owned(self, spec: ServerSpec, owner_pid: int) -> Iterator[RunningServer]:
        """A server for ``spec`` that lives as long as the block (or the --vllm-url server)."""
        if self.settings.url:
            self.attached += 1
            with attach(self.settings.url, spec, api_key=self.settings.api_key) as server:
                yield server
            return
        launcher = self.launchers.for_owner(owner_pid)
        resolve_layout(spec, launcher)  # a layout that cannot fit fails here: nothing is launched
        self.launched += 1
        self.say(f"[vllm] starting {spec.describe()}")
        with serve(
            spec,
            launcher,
            startup_timeout=self.settings.startup_timeout,
            api_key=self.settings.api_key,
            cache_dir=self.settings.cache_dir,
        ) as server:
            self._ready(server)
            yield server

    def detached(self, spec: ServerSpec, owner_pid: int | None, registry_root: Path) -> RunningServer:
        """A server that outlives this process, recorded in the registry at ``registry_root``;
        ``owner_pid``'s death stops it (None: nobody's)."""
        launcher = self.launchers.for_owner(owner_pid)
        resolve_layout(spec, launcher)  # fails before counting a launch
        self.launched += 1
        self.say(f"[vllm] starting {spec.describe()} (shared through {registry_root})")
        server = start_server(
            spec,
            launcher,
            startup_timeout=self.settings.startup_timeout,
            api_key=self.settings.api_key,
            cache_dir=self.settings.cache_dir,
        )
        self._ready(server)
        return server

    def attach_existing(self, state: ServerState, spec: ServerSpec) -> RunningServer:
        self.attached += 1
        self.say(f"[vllm] attaching to {state.url} ({spec.short_name}, started by {state.started_by})")
        return attach_state(state, spec, self.settings.api_key)

    def _ready(self, server: RunningServer) -> None:
        self.say(f"[vllm] ready in {server.startup_seconds:.1f} s at {server.url} (log: {server.log_path})")
