"""ServerPool: one server per spec per session, started on first use.

At most ``max_servers`` run at once; when a new spec needs room, the least
recently used server is stopped first. A spec whose server failed to start
fails again at once, with the same message, instead of retrying a long launch
for every test that needs it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pytest_vllm_serve.errors import ServerDiedError, VllmServeError
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.spec import ServerSpec

#: How many more times a shared server that looks unusable is looked at (1 s apart) before it is replaced.
USABLE_RECHECKS = 2

if TYPE_CHECKING:
    from pytest_vllm_serve.serving.registry import ServerRegistry, ServerState

Starter = Callable[[ServerSpec], AbstractContextManager[RunningServer]]


class Pool(Protocol):
    """What the session needs of a pool: ServerPool (servers this process owns) and
    RegistryPool (servers shared through a registry) both are one."""

    history: list[RunningServer]  # every server acquired, in order, for the session's summary

    def acquire(self, spec: ServerSpec) -> RunningServer: ...

    def running(self) -> list[RunningServer]: ...

    def release_devices(self) -> None:
        """Stop the servers this process may stop, so that an offline engine gets their devices."""

    def close(self) -> None: ...


@dataclass
class ServerPool:
    start: Starter
    max_servers: int = 1
    restart_on_crash: bool = False
    launches: int = 0
    history: list[RunningServer] = field(default_factory=list)
    _running: OrderedDict[str, tuple[RunningServer, ExitStack]] = field(default_factory=OrderedDict)
    _failed: dict[str, VllmServeError] = field(default_factory=dict)

    def acquire(self, spec: ServerSpec) -> RunningServer:
        key = spec.key()
        if key in self._failed:
            raise type(self._failed[key])(
                f"(this spec's server already failed earlier in the session; not retrying)\n{self._failed[key]}"
            )
        if key in self._running:
            server = self._running[key][0]
            died = server.death()
            if died is None:
                self._running.move_to_end(key)
                return server
            self.release(key)  # clean up what is left of it
            if not self.restart_on_crash:
                self._failed[key] = ServerDiedError(
                    f"the server for {spec.short_name} died during an earlier test: {died}; the remaining tests "
                    "of this spec fail at once.\n  fix: pass --vllm-restart-on-crash to start a new server instead"
                )
                raise self._failed[key]
        while len(self._running) >= self.max_servers:
            self.release(next(iter(self._running)))
        stack = ExitStack()
        self.launches += 1
        try:
            server = stack.enter_context(self.start(spec))
        except VllmServeError as exc:
            stack.close()
            self._failed[key] = exc
            raise
        except BaseException:
            stack.close()
            raise
        self._running[key] = (server, stack)
        self.history.append(server)
        return server

    def release(self, key: str) -> None:
        entry = self._running.pop(key, None)
        if entry is not None:
            entry[1].close()

    def running(self) -> list[RunningServer]:
        return [server for server, _ in self._running.values()]

    def release_devices(self) -> None:
        self.close()

    def close(self) -> None:
        errors = []
        for key in list(self._running):
            try:
                self.release(key)
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]


@dataclass
class RegistryPool:
    """A pool whose servers live in a ServerRegistry that other processes share.

    The first process to need a spec starts its server (under the spec's lock)
    and records it; others attach. A start failure is recorded too, so the other
    processes fail at once with the same message instead of launching again.
    Servers are not stopped when this process ends: the registry's owner (the
    xdist controller, or nobody with --vllm-reuse) does that.
    """

    registry: ServerRegistry
    start_detached: Callable[[ServerSpec], RunningServer]
    attach: Callable[[ServerState, ServerSpec], RunningServer]
    name: str = "main"  # who is starting servers (an xdist worker id)
    api_key: str | None = field(default=None, repr=False)
    say: Callable[[str], None] = lambda line: None
    launches: int = 0
    history: list[RunningServer] = field(default_factory=list)
    _servers: dict[str, RunningServer] = field(default_factory=dict)

    def acquire(self, spec: ServerSpec) -> RunningServer:
        from pytest_vllm_serve.errors import ServerStartError
        from pytest_vllm_serve.serving.registry import ServerState

        key = spec.key()
        if key in self._servers:
            return self._servers[key]
        with self.registry.lock(key):
            failure = self.registry.failure(key)
            if failure is not None:
                raise ServerStartError(
                    f"(this spec's server already failed to start in this session; not retrying)\n{failure}"
                )
            state = self.registry.read(key)
            if state is not None:
                state = self._usable(state)
            if state is None:
                self.launches += 1
                try:
                    server = self.start_detached(spec)
                except VllmServeError as exc:
                    self.registry.record_failure(key, str(exc))
                    raise
                self.registry.write(ServerState.of(server, started_by=self.name))
            else:
                server = self.attach(state, spec)
        self._servers[key] = server
        self.history.append(server)
        return server

    def _usable(self, state: ServerState) -> ServerState | None:
        """``state`` if its whole process tree runs and /health answers; else the server is
        stopped (whatever is left of it) and forgotten, so a new one starts."""
        from pytest_vllm_serve.serving.registry import stop_state

        problem = state.problem(self.api_key)
        for _ in range(USABLE_RECHECKS):  # a busy machine can miss one /health: look again first
            if problem is None:
                return state
            time.sleep(1.0)
            problem = state.problem(self.api_key)
        if problem is None:
            return state
        self.registry.record_replacement(state, self.name, problem)
        started = time.monotonic()
        try:
            stop_state(state)
        except RuntimeError:  # a launcher whose servers this process cannot stop
            raise ServerDiedError(
                f"the kept server at {state.url} cannot be reused: {problem}.\n"
                "  fix: stop it with `python -m pytest_vllm_serve.tools.servers stop`, then run again"
            ) from None
        self.registry.remove(state.key)
        self.say(
            f"[vllm] the kept server at {state.url} cannot be reused: {problem}; stopped what was left of it "
            f"in {time.monotonic() - started:.1f} s, starting a new one"
        )
        return None

    def running(self) -> list[RunningServer]:
        return list(self._servers.values())

    def release_devices(self) -> None:
        """Nothing: the servers belong to the registry's owner."""

    def close(self) -> None:
        for server in self._servers.values():
            server.close()  # clients only; the servers belong to the registry's owner
