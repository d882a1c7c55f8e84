"""A server running as a SLURM job, or as a step of the allocation pytest runs in.

:class:`SlurmJob` waits for the job to start, finds its head node and URL, reports
how it ended (from squeue and the node logs), and tears it down: it cancels the job
(or SIGTERMs the step, then cancels it after a grace period) and waits until it has
left the queue. ``job.json`` in the job's folder records its state. A watchdog
process (:mod:`pytest_vllm_serve.serving.launchers.slurm.watchdog`) does the same
teardown if pytest dies first; :func:`stop_job` does it from a server's ids alone.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_vllm_serve.errors import ServerStartError, format_log_tail
from pytest_vllm_serve.serving.known_causes import PORT_RACE_LINES, describe_cause, lost_port_race
from pytest_vllm_serve.serving.launchers.base import read_tail
from pytest_vllm_serve.serving.launchers.slurm import cli
from pytest_vllm_serve.serving.launchers.slurm.script import first_exit
from pytest_vllm_serve.serving.launchers.slurm.topology import Topology, job_ports
from pytest_vllm_serve.serving.procs import spawn_detached, terminate_tree
from pytest_vllm_serve.serving.readiness import CAUSE_SEARCH_LINES, LOG_TAIL_LINES

_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
#: Seconds a step gets after SIGTERM before it is cancelled outright (SIGKILL).
STEP_GRACE_SECONDS = 20


def _fill(words: list[str], values: Mapping[str, str]) -> list[str]:
    """Replace ``${VAR}`` in the head's command with the values the job got."""
    return [_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), w) for w in words]


@dataclass
class SlurmJob:
    """A server running as a SLURM job (or a step of the allocation pytest runs in)."""

    job_id: int
    job_dir: Path
    topology: Topology
    command: list[str]
    served_name: str
    batch_log: Path
    step_name: str
    url: str = ""
    local: subprocess.Popen[bytes] | None = None  # the launch script, inside an allocation
    watchdog: subprocess.Popen[bytes] | None = None
    port_sequence: int = 0
    stop_timeout: float = 120.0
    poll_interval: float = 1.0
    head: str | None = None
    head_ip: str | None = None
    nodes: list[str] = field(default_factory=list)
    _stopped: bool = field(default=False, init=False)
    _last_poll: float = field(default=0.0, init=False)
    _last_death: str | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.job_dir / "node0.log"

    @property
    def in_allocation(self) -> bool:
        return self.local is not None

    # -- state --------------------------------------------------------------------
    def status(self) -> cli.JobStatus:
        return cli.job_status(self.job_id)

    def wait_running(
        self,
        pending_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> cli.JobStatus:
        """Wait until the job runs; fail at once if it ends, or after ``pending_timeout``."""
        started = clock()
        while True:
            status = self.status()
            if status.serving:
                return status
            if not status.pending:
                status = self._settled(status)
                raise ServerStartError(
                    f"{status.describe()}: it ended before its server could start.\n"
                    + describe_cause(self.log_tail(CAUSE_SEARCH_LINES))
                    + f"{format_log_tail(self.log_tail(), str(self.job_dir))}\n"
                    f"  fix: read the logs above (all of them are in {self.job_dir})"
                )
            waited = clock() - started
            if status.reason in cli.HOPELESS_REASONS:
                raise ServerStartError(
                    f"SLURM job {self.job_id} can never start as asked: it is {status.state} with squeue "
                    f"reason {status.reason} (the request exceeds what the partition allows); it was cancelled.\n"
                    "  fix: ask for what the partition offers (sinfo -o '%P %D %G %l'): --nodes, --gpus-per-node, "
                    "--time or --partition in --vllm-slurm-opt"
                )
            if waited >= pending_timeout:
                raise ServerStartError(
                    f"SLURM job {self.job_id} is still {status.state} after {waited:.0f} s "
                    f"(squeue reason: {status.reason or 'none given'}); it was cancelled.\n"
                    "  fix: raise --vllm-slurm-pending-timeout, or ask for resources the cluster has "
                    "free (see sinfo and `squeue -j ID -o %r`; --vllm-slurm-opt '--partition=...')"
                )
            sleep(1.0)

    def locate(self, nodelist: str) -> None:
        """Find the head (the job's first node) and its address; set the URL."""
        self.nodes = cli.hostnames(nodelist)
        if not self.nodes:
            raise ServerStartError(f"SLURM job {self.job_id} runs on no node ({nodelist!r})")
        self.head = self.nodes[0]
        self.head_ip = cli.node_address(self.head)
        ports = job_ports(self.job_id, self.port_sequence)
        self.url = f"http://{self.head_ip}:{ports['API_PORT']}"
        values = {"HEAD_IP": self.head_ip, "HEAD_NODE": self.head, **{k: str(v) for k, v in ports.items()}}
        self.command = _fill(self.command, values)
        self._write_record(state="RUNNING")

    def poll(self) -> str | None:
        if self._last_death is not None:
            return self._last_death
        now = time.monotonic()
        if now - self._last_poll < self.poll_interval:
            return None
        self._last_poll = now
        if self.local is not None:
            code = self.local.poll()
            if code is None:
                return None
            self._last_death = (
                f"the server step of SLURM job {self.job_id} ended: its launch script exited with code {code}"
            )
            return self._last_death
        try:
            status = self.status()
        except cli.SlurmError:
            return None  # slurmctld hiccup: keep waiting; the readiness timeout still applies
        if status.serving:
            return None
        death = self._settled(status).describe()
        ended = self.first_exit()
        self._last_death = f"{death}; {ended}" if ended else death
        return self._last_death

    def first_exit(self) -> str | None:
        """Which node's server ended first, and the process vLLM named there (from the node logs)."""
        logs = {}
        for node in range(self.topology.nodes):
            path = self.job_dir / f"node{node}.log"
            try:
                logs[node] = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
        return first_exit(logs)

    def _settled(self, status: cli.JobStatus, timeout: float = 10.0) -> cli.JobStatus:
        """A job that is COMPLETING shows its final state (CANCELLED, FAILED...) once its
        processes are gone; wait a little for it, so the report says why the job ended."""
        deadline = time.monotonic() + timeout
        while status.state == "COMPLETING" and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                status = self.status()
            except cli.SlurmError:
                break
        return status

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The head's log tail, then the other nodes' and the batch log's (shorter)."""
        out: list[str] = []
        files = [self.job_dir / f"node{i}.log" for i in range(self.topology.nodes)] + [self.batch_log]
        for index, path in enumerate(files):
            tail = read_tail(path, lines if index == 0 else min(lines, 20))
            if tail:
                out.append(f"==> {path.name} <==\n")
                out += tail
        return out

    def lost_port_race(self) -> bool:
        return lost_port_race(self.log_tail(PORT_RACE_LINES))

    def mark_ready(self) -> None:
        """Nothing to record: the job's steps say whether it runs."""

    def ids(self) -> dict[str, object]:
        ids: dict[str, object] = {"slurm_job_id": self.job_id}
        if self.nodes:
            ids["slurm_nodes"] = ",".join(self.nodes)
        if self.in_allocation:
            ids["slurm_step"] = self.step_name
        ids["slurm_job_dir"] = str(self.job_dir)
        # The layout across the nodes, so that results say how the server was spread.
        ids["slurm_num_nodes"] = self.topology.nodes
        ids["slurm_dp_per_node"] = self.topology.dp_local
        ids["slurm_backend"] = self.topology.backend
        return ids

    # -- teardown -------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel the job (or this server's step) and wait until it has left the queue."""
        if self._stopped:
            return
        self._stopped = True
        gone = False
        try:
            if self.local is not None:
                self._stop_step()
            else:
                cli.cancel(str(self.job_id))
                if not cli.wait_gone(self.job_id, self.stop_timeout):
                    raise cli.SlurmError(
                        f"SLURM job {self.job_id} is still in the queue {self.stop_timeout:g} s after "
                        f"scancel: {self.status().describe()}.\n"
                        f"  fix: check the node (scontrol show node; the slurmd log), then scancel -f {self.job_id}"
                    )
            gone = True
        finally:
            # A job that would not leave keeps its watchdog: it cancels again once pytest is gone.
            if gone and self.watchdog is not None and self.watchdog.poll() is None:
                self.watchdog.kill()
                self.watchdog.wait()
            try:
                final = self.status().describe() if self.local is None else "stopped"
            except cli.SlurmError:
                final = "unknown"
            self._write_record(state=final)

    def _ours(self) -> list[str]:
        return [step for step, name in cli.steps(self.job_id) if name == self.step_name]

    def _stop_step(self) -> None:
        """SIGTERM this server's step (scancel --signal=TERM: every node stops its server), wait
        until it is gone (scancel proper after a grace period), then stop the launch script."""
        assert self.local is not None
        deadline = time.monotonic() + self.stop_timeout
        grace = time.monotonic() + STEP_GRACE_SECONDS
        for step in self._ours():
            cli.cancel(step, signal="TERM")
        while (ours := self._ours()) and time.monotonic() < deadline:
            if time.monotonic() >= grace:
                for step in ours:
                    cli.cancel(step)
            time.sleep(0.5)
        # srun exits once its step is gone; a step not created yet is abandoned with it.
        terminate_tree(self.local.pid, pgid=self.local.pid, timeout=15)
        try:
            self.local.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        left = self._ours()
        if left:
            raise cli.SlurmError(
                f"step(s) {', '.join(left)} of SLURM job {self.job_id} still run {self.stop_timeout:g} s "
                f"after scancel.\n  fix: scancel -f {' '.join(left)}; check the node (scontrol show node)"
            )

    def _write_record(self, state: str) -> None:
        record = {
            "job_id": self.job_id,
            "state": state,
            "mode": "srun inside an allocation" if self.in_allocation else "sbatch",
            "step_name": self.step_name,
            "nodes": self.nodes,
            "head": self.head,
            "head_ip": self.head_ip,
            "url": self.url,
            "ports": job_ports(self.job_id, self.port_sequence),
            "topology": self.topology.describe(),
            "command": self.command,
            "logs": [f"node{i}.log" for i in range(self.topology.nodes)] + [self.batch_log.name],
        }
        try:
            (self.job_dir / "job.json").write_text(json.dumps(record, indent=2) + "\n")
        except OSError:
            pass


def start_watchdog(
    owner_pid: int, job_id: int, step_name: str | None = None, local_pid: int | None = None
) -> subprocess.Popen[bytes]:
    args = [str(owner_pid), str(job_id)]
    if step_name is not None and local_pid is not None:
        args += [step_name, str(local_pid)]
    return spawn_detached("pytest_vllm_serve.serving.launchers.slurm.watchdog", *args)


def stop_job(ids: Mapping[str, object], timeout: float = 120.0) -> None:
    """Stop a SLURM server from its ids alone (a server shared through the registry, stopped
    by another process): its step inside an allocation, else its job; wait until it is gone."""
    job_id = int(str(ids["slurm_job_id"]))
    step_name = ids.get("slurm_step")
    if not step_name:
        cli.cancel(str(job_id))
        cli.wait_gone(job_id, timeout)
        _record_state(ids, cli.job_status(job_id).describe())
        return
    deadline = time.monotonic() + timeout
    grace = time.monotonic() + STEP_GRACE_SECONDS
    ours = [step for step, name in cli.steps(job_id) if name == step_name]
    for step in ours:
        cli.cancel(step, signal="TERM")
    while ours and time.monotonic() < deadline:
        time.sleep(0.5)
        ours = [step for step, name in cli.steps(job_id) if name == step_name]
        if time.monotonic() >= grace:
            for step in ours:
                cli.cancel(step)
    _record_state(ids, "stopped")


def _record_state(ids: Mapping[str, object], state: str) -> None:
    path = Path(str(ids.get("slurm_job_dir", ""))) / "job.json"
    try:
        record = json.loads(path.read_text())
        record["state"] = state
        path.write_text(json.dumps(record, indent=2) + "\n")
    except (OSError, ValueError):
        pass
