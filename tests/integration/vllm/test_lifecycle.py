"""Fixture lifecycle with real servers: one launch per spec, clean teardown, and
no process left after success, Ctrl-C, SIGTERM or a SIGKILLed pytest."""

from __future__ import annotations

import re
import signal
import time

import psutil
import pytest

from tests.support.inner_runs import describe, inner_pytest, wait_until

THREE_USERS = """
import httpx
import pytest

def test_a(vllm_server):
    assert vllm_server.client.get("/health").status_code == 200
    if vllm_server.api_key:  # the launched server enforces the key; the fixture's client sends it
        assert httpx.get(vllm_server.url + "/v1/models").status_code == 401
        assert vllm_server.client.get("/v1/models").status_code == 200

@pytest.mark.vllm(tp=1)  # the same spec as the default: shares the server
def test_b(vllm_server):
    assert vllm_server.log_path.exists()

def test_c(vllm_server, vllm_spec):
    assert vllm_server.spec == vllm_spec
    assert False, "fails on purpose, to show the server section of the report"
"""


def engine_running(procs):
    return [p for p in procs.alive() if "EngineCore" in " ".join(_cmd(p))]


def _cmd(proc):
    try:
        return proc.cmdline() + [proc.name()]
    except psutil.Error:
        return []


def all_gone(procs, timeout):
    return wait_until(lambda: not procs.alive(), timeout=timeout)


def test_one_launch_for_a_spec_and_nothing_left_after(pytester, inner_args, procs, tmp_path):
    pytester.makepyfile(THREE_USERS)
    secret = "sk-test-" + "x1y2z3" * 3
    result = pytester.runpytest_subprocess(*inner_args, f"--vllm-api-key={secret}", timeout=300)
    result.assert_outcomes(passed=2, failed=1)
    text = result.stdout.str()
    # The key reaches the server through its environment: never in argv, the log or the report.
    assert secret not in text + result.stderr.str()
    logs = list((tmp_path / "results").rglob("*.log"))
    assert logs and all(secret not in log.read_text(errors="replace") for log in logs)
    assert "server launches this session: 1, attached: 0" in text
    # The failing test's report shows the spec and the exact serve command.
    assert "vllm server" in text
    assert re.search(r"command: .*vllm\.entrypoints\.openai\.api_server --model \S+ .*--port \d+", text)
    assert "spec: ServerSpec(model=built-in tiny model, tp=1" in text
    assert any("EngineCore" in name for name in procs.names()), procs.names()
    assert all_gone(procs, timeout=10), "processes outlived the session:\n" + describe(procs.alive())


def test_ctrl_c_during_startup_leaves_nothing(pytester, inner_args, procs):
    pytester.makepyfile(THREE_USERS)
    with inner_pytest(pytester, *inner_args) as proc:
        assert wait_until(lambda: engine_running(procs), timeout=60), "the engine never started"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
    assert all_gone(procs, timeout=15), describe(procs.alive())


def test_sigkilled_pytest_is_cleaned_up_by_the_reaper(pytester, inner_args, procs):
    pytester.makepyfile(THREE_USERS)
    with inner_pytest(pytester, *inner_args) as proc:
        assert wait_until(lambda: engine_running(procs), timeout=60), "the engine never started"
        proc.kill()  # no teardown runs in pytest at all
        proc.wait(timeout=10)
    start = time.monotonic()
    assert all_gone(procs, timeout=40), describe(procs.alive())
    assert time.monotonic() - start < 40


def test_sigterm_during_a_test_tears_down(pytester, inner_args, procs, tmp_path):
    started = tmp_path / "started"
    pytester.makepyfile(
        f"""
        import pathlib, time

        def test_long(vllm_server):
            pathlib.Path({str(started)!r}).write_text("x")
            time.sleep(120)
        """
    )
    with inner_pytest(pytester, *inner_args) as proc:
        assert wait_until(started.exists, timeout=120), "the test never started"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
    assert all_gone(procs, timeout=15), describe(procs.alive())
