"""ServerPool: one server per spec per session, started on first use.

At most ``max_servers`` run at once; when a new spec needs room, the least
recently used server is stopped first. A spec whose server failed to start
fails again at once, with the same message, instead of retrying a long launch
for every test that needs it.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, ContextManager

from .errors import VllmServeError
from .launchers.base import RunningServer
from .spec import ServerSpec

Starter = Callable[[ServerSpec], ContextManager[RunningServer]]


@dataclass
class ServerPool:
    start: Starter
    max_servers: int = 1
    launches: int = 0
    history: list[RunningServer] = field(default_factory=list)
    _running: "OrderedDict[str, tuple[RunningServer, ExitStack]]" = field(default_factory=OrderedDict)
    _failed: dict[str, VllmServeError] = field(default_factory=dict)

    def acquire(self, spec: ServerSpec) -> RunningServer:
        key = spec.key()
        if key in self._failed:
            raise type(self._failed[key])(
                f"(this spec's server already failed earlier in the session; not retrying)\n{self._failed[key]}"
            )
        if key in self._running:
            self._running.move_to_end(key)
            return self._running[key][0]
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

    def close(self) -> None:
        errors = []
        for key in list(self._running):
            try:
                self.release(key)
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]
