"""The server pool with real vLLM servers: sharing across xdist workers, one server per
worker, and reuse across sessions (the pool's logic: tests/unit/test_pool.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import psutil
import pytest

from pytest_vllm_serve.serving.procs import is_alive
from tests.support import ROOT
from tests.support.inner_runs import describe, results_dir, wait_until

SMOKE = str(ROOT / "tests" / "smoke")


def test_three_xdist_workers_share_one_server(pytester, inner_args, procs):
    result = pytester.runpytest_subprocess(SMOKE, "-n", "3", *inner_args, "--rootdir", str(ROOT), timeout=600)
    result.assert_outcomes(passed=13)
    out = result.stdout.str()
    assert "server launches this session: 1 (shared by the xdist workers)" in out
    assert wait_until(lambda: not procs.alive(), timeout=15), describe(procs.alive())


@pytest.mark.slow  # about 1.5 min: two servers, one per xdist worker
def test_per_worker_servers(pytester, inner_args, procs):
    pytester.makepyfile(
        """
        def test_one(vllm_server):
            assert vllm_server.client.get("/health").status_code == 200
        def test_two(vllm_server):
            assert vllm_server.client.get("/health").status_code == 200
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "--vllm-per-worker", "--dist", "each", *inner_args, timeout=600)
    result.assert_outcomes(passed=4)
    results = results_dir(inner_args)
    launched = list(results.rglob("server-*.log"))
    assert len(launched) == 2, launched  # one server per worker, each on its own port
    assert len({re.search(r"-(\d+)\.log$", p.name).group(1) for p in launched}) == 2
    assert wait_until(lambda: not procs.alive(), timeout=15), describe(procs.alive())


def test_reuse_across_sessions(pytester, inner_args, procs, tmp_path):
    pytester.makepyfile(
        """
        def test_x(vllm_server):
            assert vllm_server.client.get("/health").status_code == 200
        """
    )
    first = pytester.runpytest_subprocess("--vllm-reuse", *inner_args, timeout=600)
    first.assert_outcomes(passed=1)
    assert "server launches this session: 1, attached: 0" in first.stdout.str()
    results = results_dir(inner_args)
    [state_file] = list((results / "reusable-servers").glob("*.json"))
    state = json.loads(state_file.read_text())
    assert is_alive(state["pid"]), "a reusable server outlives its session"
    second = pytester.runpytest_subprocess("--vllm-reuse", *inner_args, timeout=600)
    second.assert_outcomes(passed=1)
    assert "server launches this session: 0, attached: 1" in second.stdout.str()
    stop = subprocess.run(
        [sys.executable, "-m", "pytest_vllm_serve.tools.servers", "stop", "--results-dir", str(results)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"stopped {state['url']}" in stop.stdout
    assert wait_until(lambda: not is_alive(state["pid"]), timeout=15)
    assert not state_file.exists()
    assert wait_until(lambda: not procs.alive(), timeout=15), describe(procs.alive())


def _engine_core(pid: int) -> psutil.Process:
    [core] = [
        p for p in psutil.Process(pid).children(recursive=True) if "EngineCore" in " ".join(p.cmdline()) + p.name()
    ]
    return core


@pytest.mark.slow  # about 2 min: three server starts
def test_reuse_relaunches_a_kept_server_whose_engine_died(pytester, inner_args, procs):
    """SIGKILL only the kept server's EngineCore (its API process lives on): the next session
    says so, naming the dead process, stops what is left, and launches a new server."""
    pytester.makepyfile(
        """
        def test_x(vllm_server):
            assert vllm_server.client.get("/health").status_code == 200
        """
    )
    first = pytester.runpytest_subprocess("--vllm-reuse", *inner_args, timeout=600)
    first.assert_outcomes(passed=1)
    results = results_dir(inner_args)
    [state_file] = list((results / "reusable-servers").glob("*.json"))
    state = json.loads(state_file.read_text())
    assert any("EngineCore" in title for _, title, _ in state["engine"]), state["engine"]
    core = _engine_core(state["pid"])
    core.kill()
    core.wait(10)
    assert is_alive(state["pid"]), "the API process outlives its engine for a while"
    start = time.monotonic()
    second = pytester.runpytest_subprocess("--vllm-reuse", *inner_args, timeout=600)
    took = time.monotonic() - start
    second.assert_outcomes(passed=1)
    out = second.stdout.str()
    match = re.search(
        r"the kept server at (\S+) cannot be reused: the engine process (\S+) \(pid (\d+)\) is gone; "
        r"stopped what was left of it in ([\d.]+) s, starting a new one",
        out,
    )
    assert match, out[-3000:]
    assert match.group(1) == state["url"] and "EngineCore" in match.group(2) and int(match.group(3)) == core.pid
    assert "server launches this session: 1, attached: 0" in out
    assert not is_alive(state["pid"]), "what was left of the old server is stopped"
    print(f"dead engine found and its server stopped in {match.group(4)} s; second session {took:.1f} s")
    new = json.loads(next((results / "reusable-servers").glob("*.json")).read_text())
    assert new["pid"] != state["pid"]
    subprocess.run(
        [sys.executable, "-m", "pytest_vllm_serve.tools.servers", "stop", "--results-dir", str(results)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wait_until(lambda: not procs.alive(), timeout=20), describe(procs.alive())
