"""Security: loopback by default, secrets never written anywhere, no world-writable files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import psutil

from tests.support.inner_runs import results_dir
from tests.support.leaks import API_KEY, HF_TOKEN, PASSWORD, SECRETS, every_file, sinks_of


def test_servers_bind_loopback_by_default(vllm_server):
    assert vllm_server.command[vllm_server.command.index("--host") + 1] == "127.0.0.1"
    root = psutil.Process(vllm_server.ids["pid"])
    listening = [
        c.laddr.ip
        for proc in [root, *root.children(recursive=True)]
        for c in proc.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening and set(listening) == {"127.0.0.1"}, listening


# The secrets reach the test through the environment, as a user's would; pytest prints a
# failing test's source, so a literal there would be the test's own doing, not a leak.
SECRET_USER = """
import math, os
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

@pytest.mark.vllm(env={"HF_TOKEN": os.environ["T_HF"], "MY_SERVICE_PASSWORD": os.environ["T_PW"]})
def test_uses_secrets(vllm_bench):
    vllm_bench.run(RandomWorkload(8, 4, 4), Schedule(rate=math.inf))
    assert False, "fails on purpose, so the report with the server section is printed"
"""


def test_secrets_are_never_written_and_files_are_not_world_writable(pytester, inner_args, procs):
    pytester.makepyfile(SECRET_USER)
    junit = pytester.path / "junit.xml"
    bench = pytester.path / "bench.json"
    env = {**os.environ, "VLLM_API_KEY": API_KEY, "T_HF": HF_TOKEN, "T_PW": PASSWORD}  # key from the environment
    argv = [sys.executable, "-m", "pytest", *inner_args, "-rA", f"--junitxml={junit}", f"--benchmark-json={bench}"]
    # umask 000 would make every new file world-writable; the plugin must still not.
    done = subprocess.run(
        ["sh", "-c", 'umask 000 && exec "$@"', "sh", *argv],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "1 failed" in done.stdout, done.stdout[-3000:]
    assert "vllm server" in done.stdout  # the report section is there...
    root = results_dir(inner_args)
    sinks = {
        "pytest output": done.stdout + done.stderr,
        "junit xml": junit.read_text(),
        "benchmark json": bench.read_text(),
    }
    for path in every_file(root):
        sinks[str(path)] = path.read_text(errors="replace")
    assert any(p.name.endswith(".log") for p in every_file(root)), "the server log is among the sinks checked"
    assert any("points" in str(p) for p in every_file(root)), "the results JSON is among the sinks checked"
    for name, text in sinks.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret was written to {name}"
    assert "HF_TOKEN" in done.stdout  # ...and names the variable, without its value
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        assert not (mode & stat.S_IWOTH) or stat.S_ISLNK(mode), f"{path} is world-writable ({oct(mode)})"


MARKER_TOKEN = """
import math, os
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

@pytest.mark.vllm(args=["--hf-token", os.environ["T_HF"], "--max-num-seqs", "4"])
def test_point(vllm_bench, vllm_server):
    vllm_bench.run(RandomWorkload(8, 4, 4), Schedule(rate=math.inf))
    print("SPEC", repr(vllm_server.spec))
    assert False, "fails on purpose, so the report with the server section is printed"
"""


def test_a_token_in_marker_args_is_masked_in_every_sink(pytester, inner_args):
    """--hf-token X in the marker: the spec's repr, its description in the report, the junit
    properties and the results files all show ***."""
    from pytest_vllm_serve.tools.latency_server import running

    pytester.makepyfile(MARKER_TOKEN)
    junit = pytester.path / "junit.xml"
    env = {**os.environ, "T_HF": HF_TOKEN}
    with running() as url:
        argv = [
            sys.executable,
            "-m",
            "pytest",
            *inner_args,
            "-rA",
            "-s",
            f"--junitxml={junit}",
            f"--vllm-url={url}",
            "--vllm-warmup=0",
        ]
        done = subprocess.run(argv, cwd=pytester.path, env=env, capture_output=True, text=True, timeout=300)
    assert "1 failed" in done.stdout, done.stdout[-3000:]
    assert "args=('--hf-token', '***', '--max-num-seqs', '4')" in done.stdout  # repr()
    assert "args=--hf-token *** --max-num-seqs 4" in done.stdout  # describe(), in the report
    sinks = sinks_of(done, junit, results_dir(inner_args))
    assert any("points" in name for name in sinks), "the results JSON is among the sinks checked"
    for name, text in sinks.items():
        assert HF_TOKEN not in text, f"the token was written to {name}"
