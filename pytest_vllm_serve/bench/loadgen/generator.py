"""Drive a workload at a schedule and return one RequestRecord per request.

* The schedule is absolute: request *i* is due at ``t0 + offset[i]``; the
  sender sleeps until then, so a late send never delays the ones after it.
* ``max_concurrency`` caps requests in flight (time waiting for a slot is the
  record's queue time, not client lag). It is one cap for the whole run, also
  across client processes (``slots.py``), as vLLM's one semaphore.
* Warmup requests go first, wait for completion, and are marked ``warmup``.
* When one asyncio process cannot keep up, the requests are dealt round-robin
  to several processes. They share one ``t0`` on the system-wide monotonic
  clock (``perf_counter`` is CLOCK_MONOTONIC on Linux), so the union of their
  sends follows the same schedule.
* ``duration`` ends where ``vllm bench serve``'s does: when the last measured
  request has ended, failed ones included.
"""

from __future__ import annotations

import asyncio
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pytest_vllm_serve.bench.client import Prompt, RequestOptions
from pytest_vllm_serve.bench.loadgen.drive import (
    Abort,
    drive,
    make_client,
    not_sent,
    open_connections,
    opening_burst,
    prepare,
)
from pytest_vllm_serve.bench.loadgen.slots import close_slots, create_slots
from pytest_vllm_serve.bench.loadgen.worker import read_frame, write_frame
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.schedule import Schedule, arrival_offsets
from pytest_vllm_serve.bench.stall import Activity, StallWatch

Progress = Callable[[int, int, int], None]  # (finished, failed, total)


@dataclass(frozen=True)
class LoadPlan:
    """Everything one benchmark point sends."""

    base_url: str
    options: RequestOptions
    prompts: tuple[Prompt, ...]
    schedule: Schedule = Schedule()
    warmup: int = 1
    headers: tuple[tuple[str, str], ...] = ()
    processes: int = 1


@dataclass
class LoadResult:
    records: list[RequestRecord]  # measured requests, in workload order
    warmup_records: list[RequestRecord]
    t0: float  # schedule start (perf_counter)
    duration: float  # t0 to the end of the last measured request, failed or not (as vLLM)
    offsets: list[float]
    client_cpu_seconds: float  # CPU used by the client process(es) in the measured phase
    processes: int
    errors: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the run was cut short (a dead server, a stall); None: it ran to the end


@dataclass
class Stop:
    """Whether to cut a run short: a dead server (``abort``) or a stall. The first reason sticks."""

    abort: Abort | None = None
    stall: StallWatch | None = None
    reason: str | None = None

    @property
    def watching(self) -> bool:
        return self.abort is not None or self.stall is not None

    def check(self, last_byte: float, in_flight: int) -> str | None:
        if self.reason is None:
            self.reason = (self.abort() if self.abort else None) or (
                self.stall.check(last_byte, in_flight) if self.stall else None
            )
        return self.reason


async def _warmup(plan: LoadPlan, headers: dict[str, str]) -> list[RequestRecord]:
    if plan.warmup <= 0 or not plan.prompts:
        return []
    first = plan.prompts[0]
    async with make_client(plan.base_url, headers, plan.schedule.max_concurrency or plan.warmup) as client:
        jobs = prepare(plan.options, [(-1 - i, first, 0.0) for i in range(plan.warmup)])
        cap = plan.schedule.max_concurrency
        records = await drive(client, plan.options, jobs, time.perf_counter(), asyncio.Semaphore(cap) if cap else None)
    for record in records:
        record.warmup = True
    return records


def run_duration(records: list[RequestRecord], t0: float) -> float:
    """vLLM's benchmark duration: from ``t0`` until the last request ended, whatever its
    outcome (vLLM waits for every request, failed ones included). Requests that were
    never sent have no end and do not count."""
    ends = [r.end_time for r in records if r.end_time is not None]
    return (max(ends) - t0) if ends else 0.0


def run_load(
    plan: LoadPlan,
    progress: Progress | None = None,
    progress_interval: float = 5.0,
    before_measure: Callable[[], None] | None = None,
    after_measure: Callable[[], None] | None = None,
    abort: Abort | None = None,
    stall: StallWatch | None = None,
) -> LoadResult:
    """Warm up, then send the plan's prompts on schedule. Blocking.

    ``before_measure``/``after_measure`` run right after the warmup and right after
    the measured phase (profilers hook in there, so warmup is not traced).
    ``abort`` stops the run early when it returns a reason (see ``drive.drive``), and so
    does ``stall`` when the server stalls; the result's ``stopped`` says why.
    """
    headers = dict(plan.headers)
    warmups = asyncio.run(_warmup(plan, headers))
    offsets = arrival_offsets(len(plan.prompts), plan.schedule)
    if before_measure is not None:
        before_measure()
    stop = Stop(abort, stall)
    try:
        if plan.processes <= 1:
            result = _run_single(plan, headers, offsets, warmups, progress, progress_interval, stop)
        else:
            result = _run_multi(plan, offsets, warmups, progress, progress_interval, stop)
    finally:
        if after_measure is not None:
            after_measure()
    result.stopped = stop.reason
    return result


def _run_single(plan, headers, offsets, warmups, progress, interval, stop: Stop) -> LoadResult:
    counts = {"finished": 0, "failed": 0}

    def on_done(record: RequestRecord) -> None:
        counts["finished"] += 1
        counts["failed"] += 0 if record.success else 1

    async def reporter(total: int) -> None:
        while True:
            await asyncio.sleep(interval)
            progress(counts["finished"], counts["failed"], total)

    async def main() -> tuple[list[RequestRecord], float, float]:
        jobs = prepare(plan.options, list(zip(range(len(plan.prompts)), plan.prompts, offsets)))
        cap = plan.schedule.max_concurrency
        async with make_client(plan.base_url, headers, cap or len(jobs)) as client:
            await open_connections(client, opening_burst(jobs, cap))
            task = asyncio.create_task(reporter(len(jobs))) if progress else None
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            activity = Activity(last_byte=t0)
            watch = (lambda: stop.check(activity.last_byte, activity.in_flight)) if stop.watching else None
            try:
                records = await drive(
                    client, plan.options, jobs, t0, asyncio.Semaphore(cap) if cap else None, on_done, watch, activity
                )
            finally:
                if task:
                    task.cancel()
            return records, t0, time.process_time() - cpu0

    records, t0, cpu = asyncio.run(main())
    return LoadResult(records, warmups, t0, run_duration(records, t0), offsets, cpu, 1)


def _run_multi(plan, offsets, warmups, progress, interval, stop: Stop) -> LoadResult:
    """Deal the jobs round-robin to worker subprocesses that share one t0 and one cap.

    The cap is one pipe of free slots that every worker inherits (``slots.py``), so a
    worker whose requests finish early leaves its slots to the others, as under
    vLLM's one semaphore. A cap no smaller than the run needs no slots at all.
    """
    jobs = list(zip(range(len(plan.prompts)), plan.prompts, offsets))
    cap = plan.schedule.max_concurrency
    pipe = create_slots(cap) if cap and cap < len(jobs) else None
    try:
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "pytest_vllm_serve.bench.loadgen.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=pipe.fds if pipe else (),
            )
            for _ in range(plan.processes)
        ]
    except BaseException:
        if pipe:
            close_slots(pipe)
        raise
    try:
        return _gather_workers(plan, jobs, offsets, warmups, workers, pipe, progress, interval, stop)
    finally:
        if pipe:
            close_slots(pipe)


def _stop_workers(workers, frames, jobs, gathered, done, reason, t0, grace: float = 5.0) -> list[RequestRecord]:
    """Ask every worker to stop (SIGUSR1) and keep what they measured; the requests of a
    worker that does not answer within ``grace`` count as aborted."""
    for rank, worker in enumerate(workers):
        if rank not in done:
            try:
                worker.send_signal(signal.SIGUSR1)
            except OSError:
                pass
    deadline = time.monotonic() + grace
    while len(done) < len(workers) and time.monotonic() < deadline:
        try:
            rank, frame = frames.get(timeout=0.2)
        except queue.Empty:
            continue
        if frame[0] == "done":
            gathered += frame[1]
        if frame[0] in ("done", "error", "eof"):
            done.add(rank)
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
    have = {r.index for r in gathered}
    lost = [not_sent(i, p, t0 + o, reason) for i, p, o in jobs if i not in have]
    for record in [*gathered, *lost]:
        if record.error and record.error.startswith(("aborted: ", "not sent: ")):
            record.error = f"{record.error.split(':', 1)[0]}: {reason}"
    for record in lost:
        record.error = f"aborted: {reason}"
    return sorted([*gathered, *lost], key=lambda r: r.index)


def _gather_workers(plan, jobs, offsets, warmups, workers, pipe, progress, interval, stop: Stop) -> LoadResult:
    frames: queue.Queue[tuple[int, object]] = queue.Queue()

    def pump(rank: int, stream) -> None:
        while True:
            try:
                frames.put((rank, read_frame(stream)))
            except Exception as exc:  # EOF: the worker ended
                frames.put((rank, ("eof", str(exc))))
                return

    try:
        for rank, worker in enumerate(workers):
            write_frame(worker.stdin, ("plan", plan, pipe, jobs[rank :: plan.processes]))
            threading.Thread(target=pump, args=(rank, worker.stdout), daemon=True).start()
        ready, errors = 0, []
        while ready < len(workers):
            rank, frame = frames.get(timeout=120)
            if frame[0] == "ready":
                ready += 1
            else:
                raise RuntimeError(f"client process {rank} failed to start: {frame[1:]}")
        t0 = time.perf_counter() + 0.05  # a moment for every worker to read it
        for worker in workers:
            write_frame(worker.stdin, ("start", t0))
        gathered: list[RequestRecord] = []
        cpu = 0.0
        done: set[int] = set()
        status = [(0, 0)] * len(workers)
        activity = [(t0, 0)] * len(workers)  # (last byte, in flight) per worker
        last = time.monotonic()
        while len(done) < len(workers):
            try:
                rank, frame = frames.get(timeout=0.5)
            except queue.Empty:
                rank, frame = -1, ("idle",)
            kind = frame[0]
            if kind == "progress":
                status[rank] = (frame[1], frame[2])
                activity[rank] = (frame[3], frame[4])
            elif kind == "done":
                gathered += frame[1]
                cpu += frame[2]
                done.add(rank)
            elif kind in ("error", "eof") and rank not in done:
                errors.append(f"client process {rank}: {frame[1]}")
                done.add(rank)
            if progress and time.monotonic() - last >= interval:
                progress(sum(s[0] for s in status), sum(s[1] for s in status), len(plan.prompts))
                last = time.monotonic()
            busy = [a for rank_, a in enumerate(activity) if rank_ not in done]
            reason = (
                stop.check(max((a[0] for a in busy), default=t0), sum(a[1] for a in busy)) if stop.watching else None
            )
            if reason:  # the server died or stalled: stop the workers, keep what they measured
                records = _stop_workers(workers, frames, jobs, gathered, done, reason, t0)
                return LoadResult(
                    records, warmups, t0, run_duration(records, t0), offsets, cpu, plan.processes, errors=[reason]
                )
    finally:
        for worker in workers:
            try:
                worker.stdin.close()
            except OSError:
                pass
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
    if errors:
        raise RuntimeError("; ".join(errors))
    gathered.sort(key=lambda r: r.index)
    return LoadResult(gathered, warmups, t0, run_duration(gathered, t0), offsets, cpu, plan.processes)


def auto_processes(schedule: Schedule, n: int, per_process_rate: float = 200.0) -> int:
    """How many client processes a schedule needs: one per ``per_process_rate`` req/s,
    at most one per CPU core, and one whenever a small concurrency cap rules anyway."""
    cores = os.cpu_count() or 1
    if schedule.max_concurrency is not None and schedule.max_concurrency < 8:
        return 1
    rate = schedule.ramp.end_rps if schedule.ramp else schedule.rate
    if math.isinf(rate):
        wanted = math.ceil(n / per_process_rate)
    else:
        wanted = math.ceil(rate / per_process_rate)
    return max(1, min(cores, wanted, n))


def with_processes(plan: LoadPlan, processes: int) -> LoadPlan:
    return replace(plan, processes=max(1, processes))
