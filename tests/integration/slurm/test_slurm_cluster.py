"""``--vllm-slurm`` against the real one-node cluster: the smoke suite through sbatch,
a server as an srun step inside salloc, and failure and teardown paths (a crashed
job, a cancelled job, Ctrl-C, a SIGKILLed pytest). Each test ends with an empty
queue. Real vLLM starts are kept to two (about 40-60 s each on this machine);
the other paths stop the job before vLLM is up.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.inner_runs import USES_HEALTHY_SERVER, describe, inner_pytest, output, wait_until
from tests.support.slurm import cancel_all, our_jobs, require_cluster, wait_for_job, wait_queue_empty


@pytest.fixture
def cluster(tmp_path):
    """The cluster must answer; afterwards, no job of this test may be left in the queue."""
    require_cluster()
    marker = str(tmp_path)
    yield marker
    left = wait_queue_empty(marker, timeout=60)
    cancel_all(marker)
    assert not left, f"jobs left in the queue: {left}"


def test_smoke_suite_passes_through_sbatch(pytester, inner_args, procs, cluster, tmp_path):
    junit = tmp_path / "junit.xml"
    result = pytester.runpytest_subprocess(
        str(ROOT / "tests" / "smoke"),
        "-m",
        "smoke",
        "--vllm-slurm",
        f"--junitxml={junit}",
        *inner_args,
        timeout=420,
    )
    result.assert_outcomes(passed=13)
    text = output(result)
    assert "server launches this session: 1, attached: 0" in text
    # The job id is in the reports (junit properties) and next to the logs.
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    job_id = props["vllm_slurm_job_id"]
    assert job_id.isdigit()
    job_dir = Path(props["vllm_slurm_job_dir"])
    assert (job_dir / "serve.sbatch").read_text().startswith("#!/bin/bash")
    assert (job_dir / "node0.log").exists() and (job_dir / f"batch-{job_id}.log").exists()
    record = (job_dir / "job.json").read_text()
    assert f'"job_id": {job_id}' in record and "CANCELLED" in record  # torn down with scancel
    # Teardown waited until the job left the queue, and nothing of it runs any more.
    assert not our_jobs(cluster)
    assert any("vllm.entrypoints.openai.api_server" in n for n in procs.names()), procs.names()
    assert wait_until(lambda: not procs.alive(), timeout=15), describe(procs.alive())


def test_inside_an_allocation_the_server_is_an_srun_step(pytester, inner_args, procs, cluster, tmp_path):
    pytester.makepyfile(
        """
        import os

        def test_step(vllm_server):
            assert vllm_server.client.get("/health").status_code == 200
            assert vllm_server.ids["slurm_job_id"] == int(os.environ["SLURM_JOB_ID"])
            assert vllm_server.ids["slurm_step"].startswith("pvs-builtin-")
        """
    )
    argv = [
        "salloc",
        "-N1",
        f"--job-name={cluster}",
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--vllm-slurm",
        *inner_args[2:],
    ]
    done = subprocess.run(argv, cwd=pytester.path, capture_output=True, text=True, timeout=420)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-5000:]
    assert "1 passed" in text
    # Teardown stopped the step gracefully (SIGTERM to the node's server), not at allocation end.
    node0 = next((tmp_path / "results").rglob("node0.log")).read_text()
    assert "][node 0 vm] stopping" in node0 or re.search(r"\]\[node 0 \S+\] stopping", node0), node0[-2000:]
    assert wait_until(lambda: not procs.alive(), timeout=15), describe(procs.alive())


def test_a_crashed_job_fails_at_once_with_its_log(pytester, inner_args, cluster):
    pytester.makepyfile(USES_HEALTHY_SERVER)
    start = time.monotonic()
    result = pytester.runpytest_subprocess(*inner_args, "--vllm-slurm", "--vllm-serve-args=--no-such-flag", timeout=180)
    seconds = time.monotonic() - start
    result.assert_outcomes(errors=1)
    text = output(result)
    assert re.search(r"SLURM job \d+ (is FAILED|is COMPLETING|has left the queue|.*ended)", text), text[-3000:]
    assert "==> node0.log <==" in text
    assert "--no-such-flag" in text  # vLLM's own complaint, from the node's log
    assert seconds < 90


def test_a_cancelled_job_fails_the_test_quickly(pytester, inner_args, procs, cluster):
    pytester.makepyfile(USES_HEALTHY_SERVER)
    with inner_pytest(pytester, *inner_args, "--vllm-slurm") as proc:
        job_id = wait_for_job(cluster, "RUNNING", timeout=150, proc=proc)
        time.sleep(2)  # let vLLM begin to start
        subprocess.run(["scancel", str(job_id)], check=True, timeout=30)
        cancelled = time.monotonic()
        proc.wait(timeout=90)
    assert time.monotonic() - cancelled < 45
    text = proc.stdout.read().decode() + proc.stderr.read().decode()
    assert f"SLURM job {job_id} is CANCELLED" in text or f"SLURM job {job_id} has left the queue" in text, text[-3000:]
    assert "1 error" in text
    assert wait_until(lambda: not procs.alive(), timeout=20), describe(procs.alive())


def test_ctrl_c_cancels_the_job_and_waits_until_it_has_left_the_queue(pytester, inner_args, procs, cluster):
    pytester.makepyfile(USES_HEALTHY_SERVER)
    with inner_pytest(pytester, *inner_args, "--vllm-slurm") as proc:
        wait_for_job(cluster, "RUNNING", timeout=150, proc=proc)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
    assert not our_jobs(cluster), "pytest returned before the job left the queue"
    assert wait_until(lambda: not procs.alive(), timeout=20), describe(procs.alive())


def test_a_sigkilled_pytest_leaves_no_job_running(pytester, inner_args, procs, cluster):
    pytester.makepyfile(USES_HEALTHY_SERVER)
    with inner_pytest(pytester, *inner_args, "--vllm-slurm") as proc:
        wait_for_job(cluster, "RUNNING", timeout=150, proc=proc)
        time.sleep(2)
        proc.kill()  # no teardown runs in pytest at all; the watchdog cancels the job
        proc.wait(timeout=10)
    assert not wait_queue_empty(cluster, timeout=45), "the job outlived pytest"
    assert wait_until(lambda: not procs.alive(), timeout=20), describe(procs.alive())
