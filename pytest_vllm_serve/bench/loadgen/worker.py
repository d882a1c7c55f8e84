"""A client process for multi-process load: ``python -m pytest_vllm_serve.bench.loadgen.worker``.

Plain subprocesses (not ``multiprocessing``) so that nothing depends on the
parent's ``__main__`` being importable. The parent and the worker exchange the
typed frames of ``frames.py`` over stdin/stdout (the protocol, in order, is there),
and every worker inherits the run's one pipe of concurrency slots (``slots.py``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import BinaryIO

from pytest_vllm_serve.bench.client import StreamClient
from pytest_vllm_serve.bench.loadgen import loop
from pytest_vllm_serve.bench.loadgen.drive import Job, drive, make_client, open_connections, opening_burst, prepare
from pytest_vllm_serve.bench.loadgen.frames import Done, Error, Plan, Progress, Ready, Start, read_expected, write_frame
from pytest_vllm_serve.bench.loadgen.slots import SharedSlots
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.stall import Activity


class _Counts:
    """This worker's requests that ended, and how many of them failed."""

    def __init__(self) -> None:
        self.finished = 0
        self.failed = 0

    def on_done(self, record: RequestRecord) -> None:
        self.finished += 1
        self.failed += 0 if record.success else 1


async def _report(stdout: BinaryIO, counts: _Counts, activity: Activity) -> None:
    """A ``Progress`` frame every second: the parent's progress line and its stall watch."""
    while True:
        await asyncio.sleep(1.0)
        write_frame(stdout, Progress(counts.finished, counts.failed, activity.last_byte, activity.in_flight))


async def _send(
    client: StreamClient, setup: Plan, jobs: list[Job], t0: float, stdout: BinaryIO
) -> tuple[list[RequestRecord], float]:
    """Drive the jobs from ``t0``, reporting progress, until done or stopped by the parent's
    SIGUSR1 (it saw the server die or stall). Returns the records and the CPU seconds."""
    counts, activity = _Counts(), Activity(last_byte=t0)
    slots = SharedSlots(setup.slots) if setup.slots else None
    stopped: list[str] = []

    def abort() -> str | None:
        return stopped[0] if stopped else None

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stopped.append, "stopped by the parent")
    task = asyncio.create_task(_report(stdout, counts, activity))
    cpu0 = time.process_time()
    try:
        plan = setup.plan
        records = await drive(
            client,
            plan.options,
            jobs,
            t0,
            slots,
            counts.on_done,
            abort,
            activity,
            send_until=t0 + plan.send_for if plan.send_for else None,
            cap=plan.schedule.max_concurrency,
        )
    finally:
        task.cancel()
    return records, time.process_time() - cpu0


async def _run(setup: Plan, stdin: BinaryIO, stdout: BinaryIO) -> tuple[list[RequestRecord], float]:
    """Encode the bodies and open the connections, say ``Ready``, then send from ``Start``'s t0."""
    plan = setup.plan
    jobs = prepare(plan.options, setup.jobs)
    cap = plan.schedule.max_concurrency  # the whole run's; this worker may hold all of it
    connections = min(cap, len(jobs)) if cap else len(jobs)
    async with make_client(plan.base_url, dict(plan.headers), connections) as client:
        await open_connections(client, opening_burst(jobs, cap))
        write_frame(stdout, Ready())
        t0 = read_expected(stdin, Start).t0  # blocks this loop on purpose: nothing else runs yet
        return await _send(client, setup, jobs, t0, stdout)


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        records, cpu = loop.run(_run(read_expected(stdin, Plan), stdin, stdout))
        write_frame(stdout, Done(tuple(records), cpu))
        return 0
    except Exception as exc:  # the parent turns this into a clear error
        try:
            write_frame(stdout, Error(f"{type(exc).__name__}: {exc}"))
        except Exception:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
