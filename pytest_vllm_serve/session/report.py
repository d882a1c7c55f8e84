"""The session's report.html: its header (session.json, written at the start) and its
rewrites as points are measured, so that a crash still leaves a page (docs/report.md).

A rewrite reads every point's files, so at hundreds of points it costs seconds: after a
point the page is rewritten when the last rewrite is at least ``max(MIN_GAP_S, 20 x its
own duration)`` old, and always at the session's end.
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pytest_vllm_serve import __version__
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks.report import SESSION_JSON, ReportInputError, load_run, write_session_report
from pytest_vllm_serve.bench.sinks.results import dumps
from pytest_vllm_serve.files import atomic_write_text
from pytest_vllm_serve.redact import redact_argv, redact_text
from pytest_vllm_serve.serving.hardware import cpu_model, find_vllm, gpu_names

MIN_GAP_S = 5.0


def session_info(bench: BenchSettings) -> dict[str, Any]:
    """What the report's header says about this session: versions, machine, SLOs."""
    vllm = find_vllm()
    return {
        "started": datetime.now().isoformat(timespec="seconds"),
        "plugin_version": __version__,
        "vllm_version": f"{vllm.distribution} {vllm.version}" if vllm else "not installed here",
        "python": platform.python_version(),
        "machine": {
            "hostname": socket.gethostname(),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model() or platform.processor() or platform.machine(),
            "gpus": list(gpu_names()),
        },
        "command": command_line(sys.argv),
        "goodput_slos_ms": bench.goodput,
    }


def command_line(argv: list[str]) -> str:
    """pytest's command line with every secret masked, those inside a quoted value
    (``--vllm-serve-args '--api-key=...'``) too."""
    words: list[str] = []
    for arg in argv:
        try:
            words += shlex.split(arg)
        except ValueError:
            words.append(arg)
    return redact_text(shlex.join(redact_argv(argv)), words)


def write_session_info(root: Path, bench: BenchSettings) -> None:
    atomic_write_text(root / SESSION_JSON, dumps(session_info(bench)))


@dataclass
class SessionReport:
    """Rewrites ``root``/report.html: now and then after a point, always at the end."""

    root: Path
    say: Any = None  # a line writer for a report that could not be written
    _last: float = field(default=-1e9, init=False)
    _cost: float = field(default=0.0, init=False)

    def after_point(self) -> Path | None:
        if time.monotonic() - self._last < max(MIN_GAP_S, 20 * self._cost):
            return None
        return self.write()

    def write(self) -> Path | None:
        """Write the page now; None (and a line said) when it could not be written."""
        started = time.monotonic()
        try:
            path = write_session_report(load_run(self.root))
        except (ReportInputError, OSError) as exc:
            if self.say is not None:
                self.say(f"vllm: report.html not written: {str(exc).splitlines()[0]}")
            return None
        self._last = time.monotonic()
        self._cost = self._last - started
        return path
