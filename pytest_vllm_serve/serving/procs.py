"""Process-tree control: start in a new process group, stop the whole tree.

vLLM's API server spawns an EngineCore, which spawns workers. Teardown sends
SIGTERM to the process group *and* to every descendant found with psutil (in
case one moved to its own group), waits a bounded time, then SIGKILLs what is
left. A small reaper process (``python -m pytest_vllm_serve.serving.reaper``) does the
same if the pytest process itself dies without running its teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import psutil


def descendants(pid: int) -> list[psutil.Process]:
    """The process and all its descendants that are still alive."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [root]


def _signal_all(procs: list[psutil.Process], pgid: int | None, sig: int) -> None:
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def ignores(pid: int, sig: int) -> bool:
    """True if the process ignores ``sig`` (Linux: the SigIgn mask in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return members


def terminate_tree(
    pid: int,
    pgid: int | None = None,
    timeout: float = 20.0,
    first_signal: int = signal.SIGTERM,
    settle: float = 3.0,
) -> list[int]:
    """Stop ``pid``, its descendants and its process group. Returns pids that needed SIGKILL.

    Waits up to ``timeout`` for a graceful exit, but no longer than ``settle``
    seconds once only ``pid`` itself is left: vLLM's API server ignores SIGTERM
    while it waits for an engine that has already exited.
    """
    procs = {p.pid: p for p in descendants(pid)}
    if pgid is not None:
        procs.update({p.pid: p for p in group_members(pgid)})
    if not procs:
        return []
    _signal_all(list(procs.values()), pgid, first_signal)
    if first_signal != signal.SIGKILL:
        _signal_all(list(procs.values()), pgid, signal.SIGCONT)  # a frozen (SIGSTOPped) process handles it too
    deadline = time.monotonic() + timeout
    alive = list(procs.values())
    only_root_since: float | None = None
    while alive and time.monotonic() < deadline:
        _, alive = psutil.wait_procs(alive, timeout=0.2)
        alive = [p for p in alive if is_alive(p.pid)]  # a zombie waits only for its parent to reap it
        # Helpers that ignore the signal (multiprocessing's resource tracker) exit with their parent.
        if [p.pid for p in alive if p.pid == pid or not ignores(p.pid, first_signal)] == [pid]:
            only_root_since = only_root_since or time.monotonic()
            if time.monotonic() - only_root_since >= settle:
                break
    # Children spawned while we waited are caught here too.
    late = {p.pid: p for a in alive for p in descendants(a.pid)}
    if pgid is not None:
        late.update({p.pid: p for p in group_members(pgid)})
    if late:
        _signal_all(list(late.values()), pgid, signal.SIGKILL)
        psutil.wait_procs(list(late.values()), timeout=5)
    return sorted(late)


def spawn_detached(module: str, *args: str) -> subprocess.Popen[bytes]:
    """``python -m MODULE ARGS...`` in a session of its own, detached from ours: a watchdog
    that must outlive this process (and the signals sent to its process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def start_reaper(watch_pid: int, target_pid: int, pgid: int, state_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a detached watchdog that kills ``target_pid``'s tree once ``watch_pid`` dies."""
    args = [str(watch_pid), str(target_pid), str(pgid)]
    if state_file is not None:
        args.append(str(state_file))
    return spawn_detached("pytest_vllm_serve.serving.reaper", *args)


def first_gone(processes: Iterable[tuple[int, str, float]]) -> str | None:
    """The first of ``(pid, name, create_time)`` that no longer runs (a pid reused by another
    process counts as gone), as "the engine process NAME (pid N) is gone"; None if all run."""
    for pid, name, started in processes:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            pass
        return f"the engine process {name} (pid {pid}) is gone"
    return None


def is_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE)  # psutil has no type hints
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    remaining = [p for p in pids if is_alive(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [p for p in remaining if is_alive(p)]
    return remaining
