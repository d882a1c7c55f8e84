"""One ``max_concurrency`` cap shared by several client processes.

``vllm bench serve`` caps the requests in flight with one ``asyncio.Semaphore``.
When the load generator spreads a run over several processes, the cap must stay
one cap: split into a share per process, a process whose requests finish early
leaves its slots empty while the others still queue, and the run measures a lower
concurrency than it claims.

:class:`SharedSlots` is GNU make's jobserver: a pipe that holds one byte per free
slot. Taking a slot reads one byte, freeing it writes one back. Reads and writes of
one byte are atomic, so any number of processes share the pipe with no coordinator.
Each process waits on the pipe through its event loop (``add_reader``) and hands
the slots it gets to its own waiters first come, first served, as the semaphore does.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import os
from dataclasses import dataclass
from types import TracebackType

_TOKEN = b"+"
_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; Python 3.10+ names it


@dataclass(frozen=True)
class SlotPipe:
    """The two ends of a slot pipe, as file descriptors a child process inherits."""

    read_fd: int
    write_fd: int

    @property
    def fds(self) -> tuple[int, int]:
        return (self.read_fd, self.write_fd)


def create_slots(count: int) -> SlotPipe:
    """A pipe holding ``count`` free slots. Close it with :func:`close_slots`.

    Raises ``ValueError`` when ``count`` is not positive or more than a pipe can hold.
    """
    if count < 1:
        raise ValueError(f"a concurrency cap needs at least one slot, got {count}")
    read_fd, write_fd = os.pipe()
    try:
        if count > 4096:  # the default pipe holds 64 KiB; ask for room to spare
            try:
                fcntl.fcntl(write_fd, _SETPIPE_SZ, count)
            except OSError:
                pass
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        written = 0
        try:
            while written < count:
                written += os.write(write_fd, _TOKEN * (count - written))
        except BlockingIOError:
            raise ValueError(
                f"max_concurrency {count} is more than a pipe can hold ({written} slots) "
                "for a cap shared by several client processes; use one client process "
                "(--vllm-client-processes 1) or a smaller cap"
            ) from None
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    return SlotPipe(read_fd, write_fd)


def close_slots(pipe: SlotPipe) -> None:
    for fd in pipe.fds:
        try:
            os.close(fd)
        except OSError:
            pass


class SharedSlots:
    """An async context manager over a :class:`SlotPipe`: ``async with slots:`` holds
    one slot of the cap for the body, in whichever process runs it.

    Use it from one event loop per process. The pipe's descriptors stay owned by the
    caller (the pipe outlives this object).
    """

    def __init__(self, pipe: SlotPipe) -> None:
        self._pipe = pipe
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watching = False

    def _take(self) -> bool:
        try:
            data = os.read(self._pipe.read_fd, 1)
        except BlockingIOError:
            return False  # another process took the slot first
        if not data:
            raise RuntimeError("the shared concurrency slots were closed while the run was going")
        return True

    def _on_readable(self) -> None:
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            try:
                if not self._take():
                    return
            except RuntimeError as exc:
                self._waiters.popleft().set_exception(exc)
                continue
            self._waiters.popleft().set_result(None)
        self._unwatch()

    def _watch(self) -> None:
        if not self._watching:
            assert self._loop is not None
            self._loop.add_reader(self._pipe.read_fd, self._on_readable)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            assert self._loop is not None
            self._loop.remove_reader(self._pipe.read_fd)
            self._watching = False

    async def acquire(self) -> None:
        """Wait for a free slot and take it (first come, first served in this process)."""
        self._loop = asyncio.get_running_loop()
        if not self._waiters and self._take():
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        self._watch()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot came with the cancellation: give it back
            raise

    def release(self) -> None:
        """Give one slot back to every process sharing the pipe."""
        os.write(self._pipe.write_fd, _TOKEN)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
