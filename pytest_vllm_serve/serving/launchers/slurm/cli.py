"""The scheduler's commands: sbatch, squeue, scontrol, scancel, sinfo.

Jobs are tracked with squeue and scontrol only, never sacct: no accounting
daemon is assumed. The parsers are pure functions, tested on their own.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from pytest_vllm_serve.errors import ConfigError, VllmServeError
from pytest_vllm_serve.serving.launchers.slurm.options import parse_gres_gpus

#: Commands the launcher needs: to submit and track (sbatch mode) or to launch
#: steps inside an allocation (srun mode).
SUBMIT_COMMANDS = ("sbatch", "squeue", "scontrol", "scancel")
ALLOCATION_COMMANDS = ("srun", "squeue", "scontrol", "scancel")

#: States in which a job still holds (or waits for) its nodes.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "RESIZING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
    }
)
#: Pending reasons that no amount of waiting resolves: the job asks for more than the
#: partition (or the account) allows.
HOPELESS_REASONS = frozenset(
    {
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "BadConstraints",
        "InvalidQOS",
        "InvalidAccount",
        "QOSMaxNodePerJobLimit",
        "QOSMaxGRESPerJob",
        "QOSMaxCpuPerJobLimit",
    }
)
#: States in which the server may be up.
SERVING_STATES = frozenset({"RUNNING"})


class SlurmError(VllmServeError):
    """A SLURM command failed."""


def missing_commands(names: Sequence[str], path: str | None = None) -> list[str]:
    return [name for name in names if shutil.which(name, path=path) is None]


def require_commands(names: Sequence[str]) -> None:
    missing = missing_commands(names)
    if missing:
        raise ConfigError(
            f"--vllm-slurm needs the SLURM commands {', '.join(names)}, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not on PATH.\n"
            "  fix: run pytest on a login node of the cluster (or install the SLURM client, e.g. "
            "apt-get install slurm-client, and point SLURM_CONF at the cluster's slurm.conf); "
            "--vllm-slurm-dry-run prints the batch script without them"
        )


def run(
    argv: Sequence[str], *, timeout: float = 30.0, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a SLURM command; raise SlurmError with its output when it fails."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(
            f"`{' '.join(argv)}` did not answer within {timeout:g} s.\n"
            "  fix: check that slurmctld is running and reachable (sinfo; scontrol ping)"
        ) from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip()
        raise SlurmError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {message}")
    return done


# -- parsing (pure) -------------------------------------------------------------------


def parse_job_id(parsable: str) -> int:
    """``sbatch --parsable`` prints ``ID`` or ``ID;CLUSTER``."""
    first = parsable.strip().splitlines()[-1] if parsable.strip() else ""
    head = first.split(";", 1)[0]
    if not head.isdigit():
        raise SlurmError(f"sbatch --parsable printed {parsable.strip()!r}, not a job id")
    return int(head)


_KEY = re.compile(r"(?:^|\s)([A-Za-z][\w:/]*)=")


def parse_key_values(line: str) -> dict[str, str]:
    """``scontrol show ... -o`` output: one line of Key=Value pairs."""
    matches = list(_KEY.finditer(line))
    out: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(line)
        out[match.group(1)] = line[match.end() : end].strip()
    return out


@dataclass(frozen=True)
class JobStatus:
    """A job as the scheduler sees it. ``state`` None: the scheduler no longer knows it."""

    job_id: int
    state: str | None
    reason: str | None = None
    exit_code: str | None = None
    nodes: str | None = None  # the node list, compressed (e.g. "node[01-04]")

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def pending(self) -> bool:
        return self.state in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED")

    @property
    def serving(self) -> bool:
        return self.state in SERVING_STATES

    def describe(self) -> str:
        if self.state is None:
            return f"SLURM job {self.job_id} has left the queue"
        bits = [f"SLURM job {self.job_id} is {self.state}"]
        extra = []
        if self.reason and self.reason not in ("None", "(null)"):
            extra.append(f"reason {self.reason}")
        if self.exit_code and self.state not in ("PENDING", "RUNNING", "CONFIGURING"):
            extra.append(f"exit code {self.exit_code}")
        if self.nodes and self.nodes not in ("(null)", ""):
            extra.append(f"nodes {self.nodes}")
        if extra:
            bits.append(f"({', '.join(extra)})")
        return " ".join(bits)


def parse_squeue(job_id: int, text: str) -> JobStatus | None:
    """``squeue -h -j ID -o '%T|%r|%N'``; None when squeue does not list the job."""
    for line in text.splitlines():
        if line.strip():
            state, _, rest = line.strip().partition("|")
            reason, _, nodes = rest.partition("|")
            return JobStatus(job_id, state.strip(), reason.strip() or None, None, nodes.strip() or None)
    return None


def parse_scontrol_job(job_id: int, text: str) -> JobStatus:
    fields = parse_key_values(text.strip().splitlines()[0] if text.strip() else "")
    state = fields.get("JobState") or None
    return JobStatus(job_id, state, fields.get("Reason"), fields.get("ExitCode"), fields.get("NodeList"))


# -- queries ------------------------------------------------------------------------------


def job_status(job_id: int) -> JobStatus:
    """squeue first (cheap, live); scontrol for a job squeue no longer lists."""
    try:
        listed = parse_squeue(job_id, run(["squeue", "-h", "-j", str(job_id), "-o", "%T|%r|%N"]).stdout)
    except SlurmError as exc:
        if "Invalid job id" not in str(exc):
            raise
        listed = None  # purged from slurmctld's memory (MinJobAge)
    if listed is not None:
        return listed
    try:
        text = run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
    except SlurmError as exc:
        if "Invalid job id" in str(exc):
            return JobStatus(job_id, None)
        raise
    return parse_scontrol_job(job_id, text)


def in_queue(job_id: int) -> bool:
    """True while squeue lists the job (pending, running or completing)."""
    try:
        return parse_squeue(job_id, run(["squeue", "-h", "-j", str(job_id), "-o", "%T|%r|%N"]).stdout) is not None
    except SlurmError as exc:
        if "Invalid job id" in str(exc):
            return False
        raise


def hostnames(nodelist: str) -> list[str]:
    return run(["scontrol", "show", "hostnames", nodelist]).stdout.split()


def node_address(node: str) -> str:
    """The IPv4 address of ``node``: its NodeAddr (what SLURM itself uses), resolved."""
    addr = node
    try:
        fields = parse_key_values(run(["scontrol", "show", "node", "-o", node]).stdout)
        addr = fields.get("NodeAddr") or node
    except SlurmError:
        pass
    try:
        # AF_INET: the address is an (ip, port) pair, so its first item is the IP string.
        return cast(str, socket.getaddrinfo(addr, None, socket.AF_INET)[0][4][0])
    except OSError as exc:
        raise SlurmError(f"cannot resolve the head node {node} ({addr}) to an IPv4 address: {exc}") from None


def submit(argv: Sequence[str], env: Mapping[str, str], cwd: str | None = None) -> int:
    try:
        done = run(argv, env=env, cwd=cwd, timeout=60)
    except SlurmError as exc:
        raise ConfigError(
            f"sbatch refused the job: {exc}\n"
            "  fix: check --vllm-slurm-opt (partition, nodes, GPUs, time) against what the cluster "
            "offers (sinfo), or run with --vllm-slurm-dry-run to read the script"
        ) from None
    return parse_job_id(done.stdout)


def cancel(target: str, signal: str | None = None) -> None:
    """scancel a job (``ID``) or a step (``ID.STEP``); a job already gone is fine.

    With ``signal``, only that signal is sent (``scancel --signal``): a step cancelled
    without one is SIGKILLed at once, so steps get ``signal="TERM"`` first.
    """
    try:
        run(["scancel", *([f"--signal={signal}"] if signal else []), target])
    except SlurmError as exc:
        if "Invalid job id" not in str(exc) and "already completing" not in str(exc):
            raise


def wait_gone(job_id: int, timeout: float, interval: float = 0.5) -> bool:
    """Wait until the job has left the queue. True when it has."""
    deadline = time.monotonic() + timeout
    while True:
        if not in_queue(job_id):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def steps(job_id: int) -> list[tuple[str, str]]:
    """(step id, step name) of the job's running steps."""
    try:
        out = run(["squeue", "-h", "-s", "-j", str(job_id), "-o", "%i|%j"]).stdout
    except SlurmError as exc:
        if "Invalid job id" in str(exc):
            return []  # the allocation itself is gone
        raise
    found = []
    for line in out.splitlines():
        step, _, name = line.strip().partition("|")
        if step:
            found.append((step, name))
    return found


def partition_gpus(partition: str | None) -> int | None:
    """GPUs per node in a partition (the default one if None), from sinfo's Gres.

    With nodes of different sizes, the smallest: the job may land on any of them.
    """
    argv = ["sinfo", "-h", "-N", "-o", "%G"]
    if partition:
        argv[1:1] = ["-p", partition]
    counts = [parse_gres_gpus(line) for line in run(argv).stdout.splitlines() if line.strip()]
    known = [c for c in counts if c is not None]
    return min(known) if known else None


def allocation_env(env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The allocation pytest runs in (``SLURM_JOB_ID`` set, e.g. under salloc), else None."""
    env = os.environ if env is None else env
    if not env.get("SLURM_JOB_ID"):
        return None
    return {k: v for k, v in env.items() if k.startswith("SLURM_")}


def allocation_gpus_per_node(env: Mapping[str, str]) -> int | None:
    """GPUs per node of the allocation, from the variables SLURM sets in it."""
    for name in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE"):
        value = env.get(name)
        if value:
            match = re.search(r"(\d+)(?:\(.*\))?$", value.split(",")[0])
            if match:
                return int(match.group(1))
    if env.get("SLURM_JOB_GPUS"):
        return len([g for g in env["SLURM_JOB_GPUS"].split(",") if g.strip()])
    if env.get("SLURM_JOB_ID"):
        try:
            text = run(["scontrol", "show", "job", "-o", env["SLURM_JOB_ID"]]).stdout
        except SlurmError:
            return None
        per_node = parse_key_values(text).get("TresPerNode", "")
        if per_node and per_node != "(null)":
            return parse_gres_gpus(re.sub(r"gres[:/]", "", per_node))
    return None
