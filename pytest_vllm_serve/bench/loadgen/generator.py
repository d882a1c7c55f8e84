"""Drive a workload at a schedule and return one RequestRecord per request.

* The schedule is absolute: request *i* is due at ``t0 + offset[i]``; the
  sender sleeps until then, so a late send never delays the ones after it.
* ``max_concurrency`` caps requests in flight (time waiting for a slot is the
  record's queue time, not client lag). It is one cap for the whole run, also
  across client processes (``slots.py``), as vLLM's one semaphore.
* Warmup requests go first, wait for completion, and are marked ``warmup``.
* When one asyncio process cannot keep up, the requests are dealt round-robin
  to several processes (``parent.py``, ``worker.py``). They share one ``t0`` on
  the system-wide monotonic clock (``perf_counter`` is CLOCK_MONOTONIC on Linux),
  so the union of their sends follows the same schedule.
* ``duration`` ends where ``vllm bench serve``'s does: when the last measured
  request has ended, failed ones included.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace

from pytest_vllm_serve.bench.loadgen import loop
from pytest_vllm_serve.bench.loadgen.conversations import drive_conversations
from pytest_vllm_serve.bench.loadgen.drive import (
    Abort,
    drive,
    make_client,
    open_connections,
    opening_burst,
    prepare,
)
from pytest_vllm_serve.bench.loadgen.parent import run_multi
from pytest_vllm_serve.bench.loadgen.run import LoadPlan, LoadResult, Progress, Stop, run_duration
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.schedule import Schedule, arrival_offsets
from pytest_vllm_serve.bench.stall import Activity, StallWatch

__all__ = ["LoadPlan", "LoadResult", "Progress", "auto_processes", "run_duration", "run_load", "with_processes"]


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

    ``before_measure`` runs after the warmup, once the client processes are started, the
    request bodies encoded and the connections open, right before the first send; and
    ``after_measure`` right after the measured phase (profilers and the server-metrics
    scraper hook in there, so neither the warmup nor the client's set-up is in the phase).
    ``abort`` stops the run early when it returns a reason (see ``drive.drive``), and so
    does ``stall`` when the server stalls; the result's ``stopped`` says why.
    """
    headers = dict(plan.headers)
    warmups = loop.run(_warmup(plan, headers))
    arrivals = len(plan.conversations) if plan.conversations is not None else len(plan.prompts)
    offsets = arrival_offsets(arrivals, plan.schedule)
    stop = Stop(abort, stall)
    measuring = [False]

    def begin() -> None:
        measuring[0] = True
        if before_measure is not None:
            before_measure()

    try:
        if plan.processes <= 1 or plan.conversations is not None:
            result = _run_single(plan, headers, offsets, warmups, progress, progress_interval, stop, begin)
        else:
            result = run_multi(plan, offsets, warmups, progress, progress_interval, stop, begin)
    finally:
        if after_measure is not None and measuring[0]:
            after_measure()
    result.stopped = stop.reason
    return result


def _run_single(plan, headers, offsets, warmups, progress, interval, stop: Stop, before_measure) -> LoadResult:
    counts = {"finished": 0, "failed": 0}

    def on_done(record: RequestRecord) -> None:
        counts["finished"] += 1
        counts["failed"] += 0 if record.success else 1

    async def reporter(total: int) -> None:
        while True:
            await asyncio.sleep(interval)
            progress(counts["finished"], counts["failed"], total)

    async def main() -> tuple[list[RequestRecord], float, float]:
        arrivals = plan.prompts if plan.conversations is None else plan.prompts[: len(offsets)]
        jobs = prepare(plan.options, list(zip(range(len(arrivals)), arrivals, offsets)))
        cap = plan.schedule.max_concurrency
        async with make_client(plan.base_url, headers, cap or len(jobs)) as client:
            await open_connections(client, opening_burst(jobs, cap))
            before_measure()
            task = asyncio.create_task(reporter(plan.requests)) if progress else None
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            activity = Activity(last_byte=t0)
            watch = (lambda: stop.check(activity.last_byte, activity.in_flight)) if stop.watching else None
            slots = asyncio.Semaphore(cap) if cap else None
            try:
                if plan.conversations is not None:
                    records = await drive_conversations(
                        client, plan.options, plan.conversations, offsets, t0, slots, plan.think_time,
                        on_done, watch, activity,
                    )  # fmt: skip
                else:
                    records = await drive(
                        client,
                        plan.options,
                        jobs,
                        t0,
                        slots,
                        on_done,
                        watch,
                        activity,
                        send_until=t0 + plan.send_for if plan.send_for else None,
                        cap=cap,
                    )
            finally:
                if task:
                    task.cancel()
            return records, t0, time.process_time() - cpu0

    records, t0, cpu = loop.run(main())
    return LoadResult(records, warmups, t0, run_duration(records, t0), offsets, cpu, 1)


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
