"""Inner pytest runs (pytester) and the processes they start.

Inner pytest runs get a unique ``PVS_TEST_TAG`` in their environment, which
every process they start inherits. vLLM renames its EngineCore and workers with
setproctitle, which clobbers what /proc shows of their environment, so a
:class:`ProcessWatcher` also samples the descendants of every tagged process
while the test runs. Together they find every process, orphans included, and
let a test prove that none survive.

The bad-input tests run an inner session that uses the server (``USES_SERVER``) and time
it (``run_timed``); ``output`` is what it wrote, both streams.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import psutil

TAG_VAR = "PVS_TEST_TAG"

#: An inner test module that needs the session's server (bad input must fail before it starts).
USES_SERVER = """
def test_uses_server(vllm_server):
    assert vllm_server.model
"""

#: The same, asking the server for /health (the runs that do start one).
USES_HEALTHY_SERVER = """
def test_uses_server(vllm_server):
    assert vllm_server.client.get("/health").status_code == 200
"""

#: An inner benchmark point on the session's settings (tests/unit/test_bench_plugin.py and its servers' half).
BENCH_POINT = """
import math
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

@pytest.mark.benchmark
def test_point(vllm_bench):
    s = vllm_bench.settings
    vllm_bench.run(RandomWorkload(s.input_len, s.output_len, s.num_prompts, s.seed),
                   Schedule(rate=math.inf), suite="custom")
"""


def tagged_processes(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(TAG_VAR) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_until(predicate, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def describe(procs: list[psutil.Process]) -> str:
    out = []
    for proc in procs:
        try:
            out.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            out.append(str(proc.pid))
    return "\n".join(out)


def popen_pytest(pytester, *args: str, **kwargs):
    """Start an inner ``python -m pytest`` we can signal."""
    return pytester.popen([sys.executable, "-m", "pytest", *args], **kwargs)


def run_timed(pytester, *args: str, timeout: float = 120):
    """``runpytest_subprocess`` and the seconds it took."""
    start = time.monotonic()
    result = pytester.runpytest_subprocess(*args, timeout=timeout)
    return result, time.monotonic() - start


def output(result) -> str:
    """What an inner run wrote: stdout, then stderr."""
    return result.stdout.str() + "\n" + result.stderr.str()


@contextlib.contextmanager
def inner_pytest(pytester, *args: str, **kwargs):
    """``popen_pytest`` for a block: the inner run is killed on the way out if it still runs
    (an assertion in the block failed before it ended)."""
    proc = popen_pytest(pytester, *args, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


class ProcessWatcher:
    """Samples tagged processes and their descendants in a background thread."""

    def __init__(self, tag: str, interval: float = 0.3):
        self.tag = tag
        self.interval = interval
        self.seen: dict[tuple[int, float], psutil.Process] = {}
        self.titles: set[str] = set()  # every command line seen (vLLM renames processes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for proc in tagged_processes(self.tag):
            try:
                family = [proc, *proc.children(recursive=True)]
            except psutil.Error:
                family = [proc]
            for member in family:
                try:
                    self.seen.setdefault((member.pid, member.create_time()), member)
                    self.titles.add(" ".join(member.cmdline()) or member.name())
                except psutil.Error:
                    continue

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> ProcessWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def alive(self) -> list[psutil.Process]:
        self._sample()
        out = []
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc)
            except psutil.Error:
                continue
        return out

    def names(self) -> set[str]:
        """Command lines of every process seen, alive or not."""
        return set(self.titles)

    def kill_all(self) -> None:
        for proc in self.alive():
            try:
                proc.kill()
            except psutil.Error:
                pass


def results_dir(inner_args: list[str]) -> Path:
    """The --vllm-results-dir an inner run was given (see the inner_args fixture)."""
    return Path(next(a for a in inner_args if a.startswith("--vllm-results-dir=")).split("=", 1)[1])


def run_against(pytester, url: str, *args: str, timeout: float = 120):
    """An inner run attached to the server at ``url`` (--vllm-url), with its results under the
    pytester directory (``latest_results``)."""
    return pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--vllm-url={url}",
        f"--vllm-results-dir={pytester.path / 'results'}",
        *args,
        timeout=timeout,
    )


def latest_results(pytester) -> Path:
    """The results directory of the newest inner run started by ``run_against``."""
    return (pytester.path / "results" / "latest").resolve()
