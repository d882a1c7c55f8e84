"""``--vllm-slurm`` across the two namespace nodes of partition ``multi``
(scripts/services/slurm.sh): one vLLM server spanning both nodes with the rpc backend
(head + headless worker), and the faults across nodes.

Each node is a slurmd in its own network namespace, so the head and the worker have
their own addresses, and pytest reaches the head through the host's end of the bridge.
One inner session holds the one two-node server for the smoke suite, a benchmark point,
the placement checks and, last, the worker's engine killed mid-point. The other tests
start no server that gets ready (a drained node keeps the job pending; Ctrl-C comes
during startup).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import psutil
import pytest

from tests.support import ROOT
from tests.support.inner_runs import USES_HEALTHY_SERVER, describe, inner_pytest, results_dir, wait_until
from tests.support.slurm import MULTI, cancel_all, our_jobs, require_two_nodes, wait_for_job, wait_queue_empty

# float32: on a CPU with AMX, a data-parallel rank's bf16 worker died of SIGILL (exit code -4) at its
# first request when the server ran as a two-node srun step; the same commands in the same network
# namespaces without srun, and --dtype float32 under srun, serve (docs/slurm.md, "CPU nodes").
TWO_NODES = [
    "--vllm-slurm",
    f"--vllm-slurm-opt=--partition={MULTI} --nodes=2",
    "--vllm-dp=2",
    "--vllm-serve-args=--max-model-len 8192 --dtype float32",
]


# Runs after the smoke suite and the benchmark point, in the same session (same server).
ON_THE_SERVER = r"""
import os, re, signal, subprocess, threading, time
from pathlib import Path
import pytest
from pytest_vllm_serve.bench.point import MeasureHook
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload


def node_addr(node):
    out = subprocess.run(["scontrol", "show", "node", "-o", node], capture_output=True, text=True).stdout
    return re.search(r"NodeAddr=(\S+)", out).group(1)


def engine_pid(log, rank):
    return int(re.search(rf"\(EngineCore_DP{rank} pid=(\d+)\)", log.read_text()).group(1))


def netns_of(pid):
    return subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True).stdout.strip()


def test_head_and_worker_engines_run_on_their_own_nodes(vllm_server):
    head, worker = vllm_server.ids["slurm_nodes"].split(",")
    assert head != worker
    assert vllm_server.url.startswith(f"http://{node_addr(head)}:"), vllm_server.url
    job_dir = Path(vllm_server.ids["slurm_job_dir"])
    for rank, node in enumerate((head, worker)):
        log = job_dir / f"node{rank}.log"
        text = log.read_text()
        assert f"[node {rank} {node}] node {node} at {node_addr(node)}; head {head} ({node_addr(head)})" in text
        assert f"EngineCore_DP{rank} pid=" in text and f"EngineCore_DP{1 - rank} pid=" not in text
        # The engine process really lives in that node's network namespace.
        assert netns_of(engine_pid(log, rank)) == node
    worker_log = (job_dir / "node1.log").read_text()
    assert f"in headless mode, with head node address tcp://{node_addr(head)}:" in worker_log


class KillWorkerEngine(MeasureHook):  # two seconds into the measured phase, SIGKILL the worker node's engine
    def __init__(self, pid):
        self.pid = pid

    def before_measure(self):
        def run():
            time.sleep(2.0)
            os.kill(self.pid, signal.SIGKILL)
        threading.Thread(target=run, daemon=True).start()

    def after_measure(self):
        pass


def test_worker_engine_killed_mid_point(vllm_bench):
    pid = engine_pid(Path(vllm_bench.server.ids["slurm_job_dir"]) / "node1.log", 1)
    vllm_bench.hooks.append(KillWorkerEngine(pid))
    vllm_bench.run(RandomWorkload(16, 64, 400), Schedule(rate=8), suite="crash", params={"n": 1})
"""


@pytest.fixture
def two_nodes(tmp_path):
    """The two ready nodes; afterwards, no job of this test in the queue and nothing but
    slurmd left in either node's namespace."""
    nodes = require_two_nodes()
    marker = str(tmp_path)
    yield nodes, marker
    left = wait_queue_empty(marker, timeout=60)
    cancel_all(marker)
    assert not left, f"jobs left in the queue: {left}"
    stray = settled(nodes)
    assert not stray, f"left in the namespaces: {stray}"


def settled(nodes: list[str], timeout: float = 30.0) -> dict[str, list[str]]:
    """What is left in the namespaces once the job's processes had ``timeout`` to go."""
    deadline = time.monotonic() + timeout
    while (stray := leftovers(nodes)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return stray


def leftovers(nodes: list[str]) -> dict[str, list[str]]:
    """Processes in each node's network namespace other than its slurmd."""
    out: dict[str, list[str]] = {}
    for node in nodes:
        pids = subprocess.run(["ip", "netns", "pids", node], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                proc = psutil.Process(int(pid))
                name, cmdline = proc.name(), " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if name != "slurmd":
                out.setdefault(node, []).append(f"{pid} {cmdline[:120]}")
    return out


def test_one_server_across_two_nodes_smoke_bench_and_a_killed_worker(pytester, inner_args, procs, two_nodes):
    nodes, marker = two_nodes
    pytester.makepyfile(test_on_the_server=ON_THE_SERVER)
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        str(ROOT / "tests" / "smoke"),
        str(ROOT / "tests" / "benchmarks" / "test_sweeps.py") + "::test_concurrency",
        "test_on_the_server.py",
        *TWO_NODES,
        "--vllm-sweep-concurrency=4",
        "--vllm-num-prompts=8",
        "--vllm-prompts-per-concurrency=0",  # the 8 prompts as asked, at concurrency 4
        "--vllm-input-len=32",
        "--vllm-output-len=16",
        "--vllm-warmup=1",
        "--durations=0",
        *inner_args,
        timeout=420,
    )
    out = result.stdout.str() + result.stderr.str()
    # 13 smoke tests, the benchmark point and the placement check pass, through the head node's address.
    result.assert_outcomes(passed=15, failed=1)
    assert "server launches this session: 1, attached: 0" in out
    head_addr = re.search(r"builtin-dp2: http://(\S+):\d+ \(startup ([\d.]+) s", out)
    assert head_addr, out[-3000:]
    # The benchmark point records the layout across the nodes.
    points = {p.name: json.loads(p.read_text()) for p in results_dir(inner_args).rglob("points/*.json")}
    [concurrency] = [v for k, v in points.items() if "test_concurrency" in k]
    text = json.dumps(concurrency)
    for key, value in (
        ("slurm_num_nodes", 2),
        ("slurm_dp_per_node", 1),
        ("slurm_backend", "rpc"),
        ("slurm_nodes", ",".join(nodes)),
    ):
        assert f'"{key}": {json.dumps(value)}' in text, (key, text[:2000])
    assert concurrency["completed"] == 8 and concurrency["failed"] == 0
    # The killed worker engine fails its point within 30 s, naming the node and the process.
    assert "the server died during this point; what was measured is saved" in out
    assert re.search(rf"node 1 \({nodes[1]}\) ended first: its vLLM server exited with status \d+", out), out[-4000:]
    assert re.search(
        r"the engine process EngineCore_DP1 \(pid \d+\) died on this node: killed by SIGKILL",
        out.split("ended first", 1)[1][:3000],
    ), out[-4000:]
    [killed] = re.findall(r"^([\d.]+)s call\s+\S*test_worker_engine_killed_mid_point", out, re.MULTILINE)
    assert float(killed) < 30, killed
    assert time.monotonic() - started < 400
    assert not our_jobs(marker), "the job outlived the session"
    assert wait_until(lambda: not procs.alive(), timeout=30), describe(procs.alive())


def test_a_drained_node_keeps_the_job_pending_and_the_timeout_quotes_squeue(pytester, inner_args, two_nodes):
    nodes, marker = two_nodes
    pytester.makepyfile(USES_HEALTHY_SERVER)
    drained = nodes[1]
    subprocess.run(
        ["scontrol", "update", f"nodename={drained}", "state=drain", "reason=pvs test: drained"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        started = time.monotonic()
        result = pytester.runpytest_subprocess(*TWO_NODES, "--vllm-slurm-pending-timeout=5", *inner_args, timeout=120)
        seconds = time.monotonic() - started
    finally:
        subprocess.run(["scontrol", "update", f"nodename={drained}", "state=resume"], capture_output=True, timeout=30)
        require_two_nodes()  # back in service for the next test
    out = result.stdout.str() + result.stderr.str()
    result.assert_outcomes(errors=1)
    match = re.search(r"SLURM job \d+ is still PENDING after \d+ s \(squeue reason: ([^)]+)\); it was cancelled", out)
    assert match, out[-3000:]
    # squeue's own words (%r) for a job whose nodes are drained.
    assert (
        match.group(1) == "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions"
    )
    assert "fix: raise --vllm-slurm-pending-timeout" in out
    assert seconds < 40
    assert not our_jobs(marker), "the pending job was not cancelled"


def test_ctrl_c_during_startup_of_a_two_node_job_leaves_nothing(pytester, inner_args, procs, two_nodes):
    nodes, marker = two_nodes
    pytester.makepyfile(USES_HEALTHY_SERVER)
    with inner_pytest(pytester, *TWO_NODES, *inner_args) as proc:
        job_id = wait_for_job(marker, "RUNNING", timeout=60, proc=proc)
        # Both nodes are starting vLLM (their servers' processes run in both namespaces).
        assert wait_until(lambda: len(leftovers(nodes)) == 2, timeout=30), leftovers(nodes)
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=150)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
    assert not our_jobs(marker), f"pytest returned before job {job_id} left the queue"
    stray = settled(nodes)
    assert not stray, f"left in the namespaces: {stray}"
    assert wait_until(lambda: not procs.alive(), timeout=20), describe(procs.alive())
