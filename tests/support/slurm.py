"""Helpers for the tests that talk to the real SLURM cluster (scripts/services/slurm.sh)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

READY = ("idle", "mix", "alloc", "comp")
MULTI = "multi"  # the partition of the two namespace nodes
FIX = "fix: start the one-node cluster with `bash scripts/services/slurm.sh` (CI: bash scripts/setup.sh --services)"


def require_cluster() -> None:
    """Fail (never skip) when the cluster is not there: these tests exist to run against it."""
    missing = [c for c in ("sbatch", "srun", "salloc", "squeue", "scontrol", "scancel", "sinfo") if not shutil.which(c)]
    if missing:
        pytest.fail(f"the SLURM commands {', '.join(missing)} are not installed.\n{FIX}", pytrace=False)
    done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %P %t"], capture_output=True, text=True, timeout=30)
    # The default partition's node (marked '*'); the namespace nodes of partition multi may be down.
    lines = [line.split() for line in done.stdout.splitlines()]
    states = next((line for line in lines if len(line) == 3 and line[1].endswith("*")), [])
    if done.returncode != 0 or len(states) < 3 or states[2] not in READY:
        pytest.fail(
            f"slurmctld/slurmd are not running or the node is not ready (sinfo: "
            f"{(done.stdout + done.stderr).strip() or 'no answer'}).\n{FIX}",
            pytrace=False,
        )


def require_two_nodes() -> list[str]:
    """The two nodes of partition multi (scripts/services/slurm.sh), which must be ready (within 30 s)."""
    require_cluster()
    deadline = time.monotonic() + 30  # a node just resumed shows "idle*" until slurmctld hears from it
    while True:
        done = subprocess.run(
            ["sinfo", "-h", "-N", "-p", MULTI, "-o", "%N %t"], capture_output=True, text=True, timeout=30
        )
        nodes = [line.split() for line in done.stdout.splitlines() if line.strip()]
        ready = len(nodes) == 2 and all(state in READY for _, state in nodes)
        if ready or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if not ready:
        pytest.fail(
            f"partition {MULTI} must have two ready nodes (sinfo: {done.stdout.strip() or done.stderr.strip()}).\n"
            "fix: start the two namespace nodes with `bash scripts/services/slurm.sh`",
            pytrace=False,
        )
    return [name for name, _ in nodes]


def our_jobs(marker: str) -> list[tuple[int, str]]:
    """(job id, state) of every queued job whose name or command contains ``marker``."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%j|%o"], capture_output=True, text=True, timeout=30).stdout
    jobs = []
    for line in out.splitlines():
        job_id, state, name, command = (line.split("|", 3) + ["", "", ""])[:4]
        if marker in name or marker in command:
            jobs.append((int(job_id), state))
    return jobs


def wait_for_job(marker: str, state: str, timeout: float, proc=None) -> int:
    """The id of our job once it is in ``state``; fails with what was seen (and the inner
    pytest's output, when it ended) otherwise."""
    deadline = time.monotonic() + timeout
    seen: list[tuple[int, str]] = []
    while time.monotonic() < deadline:
        jobs = our_jobs(marker)
        seen += [j for j in jobs if j not in seen]
        for job_id, job_state in jobs:
            if job_state == state:
                return job_id
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.3)
    detail = ""
    if proc is not None and proc.poll() is not None:
        detail = "\ninner pytest ended first:\n" + (proc.stdout.read().decode() + proc.stderr.read().decode())[-4000:]
    cluster = subprocess.run(
        ["bash", "-c", "squeue -o '%i %T %r %j'; sinfo -N -l"], capture_output=True, text=True, timeout=30
    ).stdout
    pytest.fail(f"no job of this test reached {state} (seen: {seen or 'none'})\n{cluster}{detail}", pytrace=False)


def wait_queue_empty(marker: str, timeout: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while True:
        left = our_jobs(marker)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.3)


def cancel_all(marker: str) -> None:
    """Last resort after a failed test: never leave a job of ours in the queue."""
    for job_id, _ in our_jobs(marker):
        subprocess.run(["scancel", str(job_id)], capture_output=True, timeout=30)
