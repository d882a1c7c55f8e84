"""Stall detection: requests in flight, no byte on any stream for a while, and no /health.

The send loop only stamps :class:`Activity` (two attribute writes per chunk); the check
runs where the run is already polled twice a second for a dead server (``drive``'s abort
poll, the multi-process parent's loop), and the ``/health`` probe runs in a thread, so
neither delays a send.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

#: How long ``/health`` may take to answer a stall probe.
HEALTH_TIMEOUT = 2.0


@dataclass
class Activity:
    """What the requests of one client process share: when a byte last arrived, and how many
    requests are in flight. Times are ``perf_counter`` (CLOCK_MONOTONIC: one clock across
    the client processes of a run)."""

    last_byte: float = 0.0
    in_flight: int = 0

    def started(self, now: float) -> None:
        if self.in_flight == 0:
            self.last_byte = max(self.last_byte, now)  # an idle gap before it is not a stall
        self.in_flight += 1

    def ended(self) -> None:
        self.in_flight -= 1


def health_probe(base_url: str, headers: dict[str, str]) -> Callable[[], str | None]:
    """A probe of ``/health``: None when it answered 200 in time, else what it did."""

    def probe() -> str | None:
        try:
            status = httpx.get(f"{base_url.rstrip('/')}/health", headers=headers, timeout=HEALTH_TIMEOUT).status_code
        except httpx.TimeoutException:
            return f"/health did not answer within {HEALTH_TIMEOUT:g} s"
        except httpx.HTTPError as exc:
            return f"/health failed: {type(exc).__name__}: {exc}"
        return None if status == 200 else f"/health answered HTTP {status}"

    return probe


@dataclass
class StallWatch:
    """Decides that a run stalled. ``timeout`` 0 turns it off."""

    timeout: float
    probe: Callable[[], str | None]
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _verdict: list[str | None] = field(default_factory=list, init=False, repr=False)

    def check(self, last_byte: float, in_flight: int, now: float | None = None) -> str | None:
        """The stall, as a reason to stop the run, or None. Never blocks."""
        now = time.perf_counter() if now is None else now
        silent = now - last_byte
        if self.timeout <= 0 or in_flight <= 0 or silent < self.timeout:
            self._verdict.clear()
            return None
        if self._thread is None or not self._thread.is_alive():
            if self._verdict:
                failed = self._verdict.pop()
                if failed:
                    return (
                        f"the server stalled: {in_flight} request(s) in flight and no byte on any stream for "
                        f"{silent:.0f} s (--vllm-stall-timeout {self.timeout:g}), and {failed}"
                    )
            self._thread = threading.Thread(target=lambda: self._verdict.append(self.probe()), daemon=True)
            self._thread.start()
        return None
