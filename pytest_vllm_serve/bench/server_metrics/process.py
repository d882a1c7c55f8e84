"""The CPU seconds and peak RSS of a launched local server's process tree over a measured phase:
the figures a server without GPU telemetry still has (docs/server-metrics.md).

Only for servers this machine runs (launcher ``local``, with a ``pid``); a --vllm-url, Docker or
SLURM server's processes are not ours to read.
"""

from __future__ import annotations

from typing import Any

import psutil


def local_pid(launcher: str, ids: dict[str, object]) -> int | None:
    pid = ids.get("pid")
    return pid if launcher == "local" and isinstance(pid, int) else None


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_usage(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, user + system, and RSS bytes) summed over the process and its descendants;
    None when the process is gone."""
    cpu, rss, seen = 0.0, 0, False
    for proc in _tree(pid):
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system
            rss += proc.memory_info().rss
            seen = True
        except psutil.Error:
            continue
    return (cpu, rss) if seen else None


def process_figures(start: tuple[float, int] | None, end: tuple[float, int] | None, rss: list[int]) -> dict[str, Any]:
    """``cpu_seconds`` (the tree's growth over the phase: processes that ended in it are not
    counted) and ``rss_peak_mb`` (the largest sum over the phase's samples)."""
    out: dict[str, Any] = {}
    if start is not None and end is not None:
        out["cpu_seconds"] = max(end[0] - start[0], 0.0)
    samples = [*rss, *(s[1] for s in (start, end) if s is not None)]
    if samples:
        out["rss_peak_mb"] = max(samples) / 2**20
    return out
