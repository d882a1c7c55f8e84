"""Drive a workload at a schedule and return one RequestRecord per request.

* The schedule is absolute: request *i* is due at ``t0 + offset[i]``; the
  sender sleeps until then, so a late send never delays the ones after it.
* ``max_concurrency`` caps requests in flight (time waiting for a slot is the
  record's queue time, not client lag).
* Warmup requests go first, wait for completion, and are marked ``warmup``.
* When one asyncio process cannot keep up, the requests are dealt round-robin
  to several processes. They share one ``t0`` on the system-wide monotonic
  clock (``perf_counter`` is CLOCK_MONOTONIC on Linux), so the union of their
  sends follows the same schedule.
"""

from __future__ import annotations

import asyncio
import math
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from .client import Prompt, RequestOptions, send
from .loadworker import read_frame, write_frame
from .records import RequestRecord
from .schedule import Schedule, arrival_offsets

Progress = Callable[[int, int, int], None]  # (finished, failed, total)
Abort = Callable[[], "str | None"]  # polled during a run: a reason to stop (the server died), or None

#: The last stretch before a send is due is waited out by yielding, not sleeping.
SPIN_WINDOW = 0.0015


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
    duration: float  # t0 to the last measured request's end
    offsets: list[float]
    client_cpu_seconds: float  # CPU used by the client process(es) in the measured phase
    processes: int
    errors: list[str] = field(default_factory=list)


def make_client(base_url: str, headers: dict[str, str], connections: int) -> httpx.AsyncClient:
    """The httpx client the load generator streams with.

    Its transport is aiohttp's (``httpx-aiohttp``): the same httpx API, but HTTP
    parsing in C and a connection pool whose cost does not grow with the number
    of connections. With httpx's default transport the client spent ~90 us of CPU
    per streamed chunk and its pool scans every connection per queued request,
    which made it the bottleneck at 64 concurrent streams; with this one, ~45 us.

    ``connections`` must cover every request that can be in flight at once: the
    transport maps "no limit" onto aiohttp's default of 100 connections, which
    silently capped a 200-request burst at 100 concurrent requests.
    """
    size = max(int(connections), 1)
    return HttpxAiohttpClient(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(connect=30.0, read=None, write=60.0, pool=None),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=60),
    )


def _not_sent(index: int, prompt: Prompt, due: float, reason: str) -> RequestRecord:
    """A request the run never sent because it was aborted."""
    return RequestRecord(index=index, scheduled_time=due, dispatch_time=due, send_time=due,
                         prompt_len=prompt.prompt_len, expected_output_len=prompt.output_len,
                         error=f"not sent: {reason}")


@dataclass(frozen=True)
class Job:
    """One request of a run: its place in the workload, its due offset and its encoded body."""

    index: int
    prompt: Prompt
    offset: float
    body: bytes


def prepare(options: RequestOptions, jobs: list[tuple[int, Prompt, float]]) -> list[Job]:
    """Encode every request body (done before the clock starts)."""
    return [Job(index, prompt, offset, options.encode(prompt)) for index, prompt, offset in jobs]


def opening_burst(jobs: list[Job], concurrency: int | None) -> int:
    """How many requests are due at the very start, at most ``concurrency``."""
    due = sum(1 for job in jobs if job.offset <= 0.0)
    return min(due, concurrency) if concurrency else due


async def open_connections(client: httpx.AsyncClient, count: int) -> None:
    """Open ``count`` connections before the clock starts (best effort).

    A request that has to open its connection first waits for the TCP handshake,
    and in a burst every request's handshake waits for the others: without this,
    that lands in the first requests' TTFT. ``GET /v1/models`` is cheap on every
    OpenAI-compatible server; ``count`` of them at once make the pool open
    ``count`` connections, which are then kept alive for the run.
    """
    if count <= 0:
        return
    await asyncio.gather(*(client.get("/v1/models") for _ in range(count)), return_exceptions=True)


async def _drive(
    client: httpx.AsyncClient,
    options: RequestOptions,
    jobs: list[Job],
    t0: float,
    concurrency: int | None,
    on_done: Callable[[RequestRecord], None] | None = None,
    abort: Abort | None = None,
) -> list[RequestRecord]:
    """Send the jobs at ``t0 + offset`` and wait for all.

    After starting each request the sender yields once, so that request's bytes are
    written before the next one is built: a burst leaves one request after another,
    each stamped when it really starts, rather than all built first and written at
    the end (which would put the whole burst's build time into the first
    requests' TTFT).

    ``abort`` is polled twice a second; once it returns a reason (the server died),
    requests in flight are cancelled and recorded as failed with that reason, and
    the ones not yet sent are recorded as not sent.
    """
    semaphore = asyncio.Semaphore(concurrency) if concurrency else None
    clock = time.perf_counter
    records: dict[int, RequestRecord] = {}

    async def one(record: RequestRecord, body: bytes) -> RequestRecord:
        if semaphore is None:
            await send(client, options, body, record)
        else:
            async with semaphore:
                await send(client, options, body, record)
        if on_done is not None:
            on_done(record)
        return record

    tasks: list[asyncio.Task] = []

    async def dispatch() -> None:
        for job in jobs:
            due = t0 + job.offset
            delay = due - clock()
            if delay > SPIN_WINDOW:
                # The event loop's timer wakes up to ~1 ms late; sleep to just before
                # the due time, then yield until it (other requests keep running).
                await asyncio.sleep(delay - SPIN_WINDOW)
            while clock() < due:
                await asyncio.sleep(0)
            record = RequestRecord(
                index=job.index,
                scheduled_time=due,
                dispatch_time=clock(),
                prompt_len=job.prompt.prompt_len,
                expected_output_len=job.prompt.output_len,
            )
            records[job.index] = record
            tasks.append(asyncio.create_task(one(record, job.body)))
            await asyncio.sleep(0)  # let it reach the wire (see above)
        await asyncio.gather(*tasks)

    sender = asyncio.create_task(dispatch())
    reason = None
    if abort is None:
        await sender
    else:
        while not sender.done():
            await asyncio.wait([sender], timeout=0.5)
            if not sender.done():
                reason = abort()
                if reason:
                    break
        if reason:
            sender.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(sender, *tasks, return_exceptions=True)
        else:
            await sender
    out = []
    for job in jobs:
        record = records.get(job.index)
        if record is None:
            out.append(_not_sent(job.index, job.prompt, t0 + job.offset, reason or "the run stopped"))
        else:
            if record.error is None and (record.done_time is None or reason and not record.success):
                record.error = f"aborted: {reason}"
            out.append(record)
    return out


async def _warmup(plan: LoadPlan, headers: dict[str, str]) -> list[RequestRecord]:
    if plan.warmup <= 0 or not plan.prompts:
        return []
    first = plan.prompts[0]
    async with make_client(plan.base_url, headers, plan.schedule.max_concurrency or plan.warmup) as client:
        jobs = prepare(plan.options, [(-1 - i, first, 0.0) for i in range(plan.warmup)])
        records = await _drive(client, plan.options, jobs, time.perf_counter(), plan.schedule.max_concurrency)
    for record in records:
        record.warmup = True
    return records


def _split_concurrency(cap: int | None, processes: int, rank: int) -> int | None:
    if cap is None:
        return None
    share = cap // processes + (1 if rank < cap % processes else 0)
    return max(share, 1)


def _end_time(record: RequestRecord) -> float:
    return record.done_time or (record.chunk_times[-1] if record.chunk_times else record.send_time)


def _finish(records: list[RequestRecord], t0: float) -> float:
    ends = [_end_time(r) for r in records if r.send_time]
    return (max(ends) - t0) if ends else 0.0


def run_load(
    plan: LoadPlan,
    progress: Progress | None = None,
    progress_interval: float = 5.0,
    before_measure: Callable[[], None] | None = None,
    after_measure: Callable[[], None] | None = None,
    abort: Abort | None = None,
) -> LoadResult:
    """Warm up, then send the plan's prompts on schedule. Blocking.

    ``before_measure``/``after_measure`` run right after the warmup and right after
    the measured phase (profilers hook in there, so warmup is not traced).
    ``abort`` stops the run early when it returns a reason (see ``_drive``).
    """
    headers = dict(plan.headers)
    warmups = asyncio.run(_warmup(plan, headers))
    offsets = arrival_offsets(len(plan.prompts), plan.schedule)
    if before_measure is not None:
        before_measure()
    try:
        if plan.processes <= 1:
            result = _run_single(plan, headers, offsets, warmups, progress, progress_interval, abort)
        else:
            result = _run_multi(plan, offsets, warmups, progress, progress_interval, abort)
    finally:
        if after_measure is not None:
            after_measure()
    return result


def _run_single(plan, headers, offsets, warmups, progress, interval, abort=None) -> LoadResult:
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
            try:
                records = await _drive(client, plan.options, jobs, t0, plan.schedule.max_concurrency, on_done, abort)
            finally:
                if task:
                    task.cancel()
            return records, t0, time.process_time() - cpu0

    records, t0, cpu = asyncio.run(main())
    return LoadResult(records, warmups, t0, _finish(records, t0), offsets, cpu, 1)


def _run_multi(plan, offsets, warmups, progress, interval, abort=None) -> LoadResult:
    """Deal the jobs round-robin to worker subprocesses that share one t0."""
    jobs = list(zip(range(len(plan.prompts)), plan.prompts, offsets))
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest_vllm_serve.loadworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(plan.processes)
    ]
    frames: "queue.Queue[tuple[int, object]]" = queue.Queue()

    def pump(rank: int, stream) -> None:
        while True:
            try:
                frames.put((rank, read_frame(stream)))
            except Exception as exc:  # EOF: the worker ended
                frames.put((rank, ("eof", str(exc))))
                return

    try:
        for rank, worker in enumerate(workers):
            concurrency = _split_concurrency(plan.schedule.max_concurrency, plan.processes, rank)
            write_frame(worker.stdin, ("plan", plan, concurrency, jobs[rank :: plan.processes]))
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
        last = time.monotonic()
        while len(done) < len(workers):
            try:
                rank, frame = frames.get(timeout=0.5)
            except queue.Empty:
                rank, frame = -1, ("idle",)
            kind = frame[0]
            if kind == "progress":
                status[rank] = (frame[1], frame[2])
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
            reason = abort() if abort is not None else None
            if reason:  # the server died: stop the workers; their requests count as aborted
                for worker in workers:
                    worker.kill()
                gathered = [_not_sent(i, p, t0 + o, reason) for i, p, o in jobs]
                for record in gathered:
                    record.error = f"aborted: {reason}"
                return LoadResult(gathered, warmups, t0, time.perf_counter() - t0, offsets, cpu, plan.processes,
                                  errors=[reason])
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
    return LoadResult(gathered, warmups, t0, _finish(gathered, t0), offsets, cpu, plan.processes)


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
