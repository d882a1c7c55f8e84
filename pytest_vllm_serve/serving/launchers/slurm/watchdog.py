"""Watchdog: ``python -m pytest_vllm_serve.serving.launchers.slurm.watchdog OWNER_PID JOB_ID [STEP_NAME LOCAL_PID]``.

Started detached next to every SLURM server. When the process that owns the
server (pytest) disappears without stopping it - a SIGKILL, a crash, a closed
terminal - the watchdog cancels the job, so it does not keep holding nodes:

- a submitted job (no STEP_NAME): ``scancel JOB_ID``;
- a server started inside an allocation (STEP_NAME, LOCAL_PID): it stops the
  local launch script's process tree and cancels the job's steps named
  STEP_NAME; the allocation itself belongs to the user and stays.

It exits as soon as the job (or the step) is gone by any route.
"""

from __future__ import annotations

import sys
import time

from pytest_vllm_serve.serving.launchers.slurm import cli
from pytest_vllm_serve.serving.procs import is_alive, terminate_tree

POLL_SECONDS = 1.0


def _ours(job_id: int, step_name: str) -> list[str]:
    return [step for step, name in cli.steps(job_id) if name == step_name]


def main(argv: list[str]) -> int:
    owner, job_id = int(argv[0]), int(argv[1])
    step_name = argv[2] if len(argv) > 2 else None
    local_pid = int(argv[3]) if len(argv) > 3 else None
    while True:
        try:
            if step_name is None:
                if not cli.in_queue(job_id):
                    return 0
            elif (local_pid is None or not is_alive(local_pid)) and not _ours(job_id, step_name):
                return 0
            if not is_alive(owner):
                break
        except cli.SlurmError:
            if not is_alive(owner):
                break
        time.sleep(POLL_SECONDS)
    # The owner died without tearing down.
    if step_name is None:
        cli.cancel(str(job_id))
        cli.wait_gone(job_id, timeout=120)
        return 0
    if local_pid is not None and is_alive(local_pid):
        terminate_tree(local_pid, pgid=local_pid, timeout=15)
    for step in _ours(job_id, step_name):
        cli.cancel(step)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
