"""A client process for multi-process load: ``python -m pytest_vllm_serve.bench.loadgen.worker``.

Plain subprocesses (not ``multiprocessing``) so that nothing depends on the
parent's ``__main__`` being importable. The parent and the worker exchange
length-prefixed pickle frames over stdin/stdout, and every worker inherits the
run's one pipe of concurrency slots (``slots.py``):

    parent -> worker: ("plan", LoadPlan, SlotPipe or None, jobs)
    worker -> parent: ("ready",)
    parent -> worker: ("start", t0)
    worker -> parent: ("progress", finished, failed) ... then ("done", records, cpu_seconds)
                      or ("error", message)
"""

from __future__ import annotations

import asyncio
import pickle
import signal
import struct
import sys
import time
from typing import Any, BinaryIO

_HEADER = struct.Struct("!Q")


def write_frame(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("peer closed the pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("peer closed the pipe mid-frame")
    return pickle.loads(data)


def main() -> int:
    from pytest_vllm_serve.bench.loadgen.drive import (
        drive,
        make_client,
        open_connections,
        opening_burst,
        prepare,
    )  # keeps the parent's import light
    from pytest_vllm_serve.bench.loadgen.slots import SharedSlots
    from pytest_vllm_serve.bench.stall import Activity

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        _, plan, pipe, jobs = read_frame(stdin)
        counts = {"finished": 0, "failed": 0}
        activity = Activity()
        stopped: list[str] = []  # set by SIGUSR1: the parent saw the server die or stall

        def on_done(record) -> None:
            counts["finished"] += 1
            counts["failed"] += 0 if record.success else 1

        async def reporter() -> None:
            while True:
                await asyncio.sleep(1.0)
                write_frame(
                    stdout, ("progress", counts["finished"], counts["failed"], activity.last_byte, activity.in_flight)
                )

        async def run():
            prepared = prepare(plan.options, jobs)
            cap = plan.schedule.max_concurrency  # the whole run's; this worker may hold all of it
            connections = min(cap, len(jobs)) if cap else len(jobs)
            async with make_client(plan.base_url, dict(plan.headers), connections) as client:
                await open_connections(client, opening_burst(prepared, cap))
                write_frame(stdout, ("ready",))
                _, t0 = read_frame(stdin)  # blocks this loop on purpose: nothing else runs yet
                activity.last_byte = t0
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stopped.append, "stopped by the parent")
                task = asyncio.create_task(reporter())
                cpu0 = time.process_time()
                try:
                    records = await drive(
                        client,
                        plan.options,
                        prepared,
                        t0,
                        SharedSlots(pipe) if pipe else None,
                        on_done,
                        lambda: stopped[0] if stopped else None,
                        activity,
                    )
                finally:
                    task.cancel()
                return records, time.process_time() - cpu0

        records, cpu = asyncio.run(run())
        write_frame(stdout, ("done", records, cpu))
        return 0
    except Exception as exc:  # the parent turns this into a clear error
        try:
            write_frame(stdout, ("error", f"{type(exc).__name__}: {exc}"))
        except Exception:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
