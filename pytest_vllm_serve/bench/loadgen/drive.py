"""Sending one process's share of a run: the jobs, each at its due time, under the cap.

Both the single-process run (``generator.py``) and each client process of a multi-process
run (``worker.py``) drive their jobs with :func:`drive`; everything a send needs is
prepared before the clock starts (bodies encoded, connections opened).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pytest_vllm_serve.bench.client import Prompt, RequestOptions, StreamClient, send
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.stall import Activity

Abort = Callable[[], "str | None"]  # polled during a run: a reason to stop (the server died), or None
#: The concurrency cap: an ``asyncio.Semaphore`` in one process, ``SharedSlots`` across several.
Slots = AbstractAsyncContextManager[Any]

#: The last stretch before a send is due is waited out by yielding, not sleeping.
SPIN_WINDOW = 0.0015

#: How long (s) a pooled connection may sit idle and still be handed to a request.
#: It must stay well below the server's keep-alive timeout (uvicorn's and vLLM's
#: default, VLLM_HTTP_TIMEOUT_KEEP_ALIVE, is 5 s): a server closes an idle connection
#: at its timeout whether or not the client is about to write on it, and a POST whose
#: connection was closed under it fails ("Server disconnected", "Can not write request
#: body"); aiohttp retries only idempotent methods. On a starved client the pool's idle
#: check and the request's first byte can be a second or more apart, so the margin is
#: wide. An older connection is closed and a new one opened for the request.
KEEPALIVE_EXPIRY = 2.0


def make_client(base_url: str, headers: dict[str, str], connections: int) -> StreamClient:
    """The client the load generator streams with: aiohttp's session, called directly.

    aiohttp parses HTTP in C and its connection pool's cost does not grow with the number
    of connections (httpx's own transport spent ~90 us of CPU per streamed chunk and scanned
    every connection per queued request, the bottleneck at 64 concurrent streams). Calling
    it directly, not through httpx's API over it, leaves out httpx's URL, request and
    response models on every request (docs/benchmarks.md, "Client CPU per request").

    ``connections`` must cover every request that can be in flight at once (aiohttp's
    default limit is 100 connections, which would cap a 200-request burst at 100).

    Idle connections are reused for at most ``KEEPALIVE_EXPIRY`` seconds (see there):
    with 60 s, a burst that the client dispatched slowly under CPU starvation sent
    some requests on pre-opened connections the server had already closed.
    """
    size = max(int(connections), 1)
    connector = aiohttp.TCPConnector(limit=size, limit_per_host=0, keepalive_timeout=KEEPALIVE_EXPIRY)
    session = aiohttp.ClientSession(
        headers=headers,
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30.0),
    )
    return StreamClient(session, base_url)


def not_sent(index: int, prompt: Prompt, due: float, reason: str) -> RequestRecord:
    """A request the run never sent because it was aborted."""
    return RequestRecord(
        index=index,
        scheduled_time=due,
        dispatch_time=due,
        send_time=due,
        prompt_len=prompt.prompt_len,
        expected_output_len=prompt.output_len,
        error=f"not sent: {reason}",
    )


@dataclass(frozen=True)
class Job:
    """One request of a run: its place in the workload, its due offset and its encoded body."""

    index: int
    prompt: Prompt
    offset: float
    body: bytes


def prepare(options: RequestOptions, jobs: Sequence[tuple[int, Prompt, float]]) -> list[Job]:
    """Encode every request body (done before the clock starts); a prompt sent several times
    (--vllm-duration reuses them) is encoded once."""
    bodies: dict[int, bytes] = {}
    out = []
    for index, prompt, offset in jobs:
        body = bodies.get(id(prompt))
        if body is None:
            body = bodies[id(prompt)] = options.encode(prompt)
        out.append(Job(index, prompt, offset, body))
    return out


def opening_burst(jobs: list[Job], concurrency: int | None) -> int:
    """How many requests are due at the very start, at most ``concurrency``."""
    due = sum(1 for job in jobs if job.offset <= 0.0)
    return min(due, concurrency) if concurrency else due


async def _probe(client: StreamClient) -> None:
    async with client.session.get(client.url("/v1/models")) as response:
        await response.read()


async def open_connections(client: StreamClient, count: int) -> None:
    """Open ``count`` connections before the clock starts (best effort).

    A request that has to open its connection first waits for the TCP handshake,
    and in a burst every request's handshake waits for the others: without this,
    that lands in the first requests' TTFT. ``GET /v1/models`` is cheap on every
    OpenAI-compatible server; ``count`` of them at once make the pool open
    ``count`` connections, which are then kept alive for the run.
    """
    if count <= 0:
        return
    await asyncio.gather(*(_probe(client) for _ in range(count)), return_exceptions=True)


async def drive(
    client: StreamClient,
    options: RequestOptions,
    jobs: list[Job],
    t0: float,
    slots: Slots | None,
    on_done: Callable[[RequestRecord], None] | None = None,
    abort: Abort | None = None,
    activity: Activity | None = None,
    send_until: float | None = None,
    cap: int | None = None,
) -> list[RequestRecord]:
    """Send the jobs at ``t0 + offset`` and wait for all.

    ``send_until`` (--vllm-duration): no request is sent at or after this time; the jobs
    left are not part of the run (no record). Under a ``cap`` (the point's max concurrency),
    the sender then starts a request only when one of the cap's slots is free, so that a
    long job list costs no waiting tasks.

    ``slots`` is the ``max_concurrency`` cap (None: no cap). Each request holds one
    slot from before its send stamp until its stream is done, as under vLLM's
    semaphore; the wait for it is the record's queue time.

    After starting each request the sender yields once, so that request's bytes are
    written before the next one is built: a burst leaves one request after another,
    each stamped when it really starts, rather than all built first and written at
    the end (which would put the whole burst's build time into the first
    requests' TTFT).

    ``abort`` is polled twice a second; once it returns a reason (the server died),
    requests in flight are cancelled and recorded as failed with that reason, and
    the ones not yet sent are recorded as not sent.
    """
    sender = _Sender(client, options, slots, on_done, activity, send_until)
    if send_until is not None and slots is not None and cap:
        sender.admission = asyncio.Semaphore(cap)
    dispatch = asyncio.create_task(sender.dispatch(jobs, t0))
    reason = await _wait(dispatch, sender.tasks, abort)
    return _outcome(jobs, sender.records, t0, time.perf_counter(), reason, sender.dropped)


@dataclass
class _Sender:
    """One :func:`drive`'s sends: what each needs, and the records and tasks made so far."""

    client: StreamClient
    options: RequestOptions
    slots: Slots | None
    on_done: Callable[[RequestRecord], None] | None
    activity: Activity | None
    send_until: float | None = None
    admission: asyncio.Semaphore | None = None  # with send_until under a cap: start only into a free slot
    records: dict[int, RequestRecord] = field(default_factory=dict)
    tasks: list[asyncio.Task[RequestRecord]] = field(default_factory=list)
    dropped: set[int] = field(default_factory=set)  # reached their slot after send_until: not sent

    def _past(self, when: float) -> bool:
        return self.send_until is not None and when >= self.send_until

    async def dispatch(self, jobs: list[Job], t0: float) -> None:
        """Start each job's request at its due time, then wait for them all."""
        clock = time.perf_counter
        for job in jobs:
            due = t0 + job.offset
            if self._past(due) or (self.admission is not None and not await self._admitted()):
                break  # the point's duration is over: the rest is not sent
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
            self.records[job.index] = record
            self.tasks.append(asyncio.create_task(self.one(record, job.body)))
            await asyncio.sleep(0)  # let it reach the wire (see drive)
        await asyncio.gather(*self.tasks)

    async def _admitted(self) -> bool:
        """Wait for a free slot to start the next request into; False once the duration is over."""
        assert self.admission is not None
        await self.admission.acquire()
        if self._past(time.perf_counter()):
            self.admission.release()
            return False
        return True

    async def one(self, record: RequestRecord, body: bytes) -> RequestRecord:
        """One request, under a slot of the cap when there is one."""
        try:
            if self.slots is None:
                await self.measured(record, body)
            else:
                async with self.slots:
                    if self._past(time.perf_counter()):
                        self.dropped.add(record.index)  # its slot came after the duration: not sent
                        return record
                    await self.measured(record, body)
        finally:
            if self.admission is not None:
                self.admission.release()
        if self.on_done is not None:
            self.on_done(record)
        return record

    async def measured(self, record: RequestRecord, body: bytes) -> None:
        """Send it, counted in ``activity`` (when there is one) while it is in flight."""
        if self.activity is None:
            await send(self.client, self.options, body, record)
            return
        self.activity.started(time.perf_counter())
        try:
            await send(self.client, self.options, body, record, self.activity)
        finally:
            self.activity.ended()


async def _wait(
    dispatch: asyncio.Task[None], tasks: list[asyncio.Task[RequestRecord]], abort: Abort | None
) -> str | None:
    """Wait for the sends to end, polling ``abort`` twice a second; on its first reason,
    cancel the sends and the requests in flight and return it."""
    if abort is None:
        await dispatch
        return None
    reason = None
    while not dispatch.done():
        await asyncio.wait([dispatch], timeout=0.5)
        if not dispatch.done():
            reason = abort()
            if reason:
                dispatch.cancel()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(dispatch, *tasks, return_exceptions=True)
                return reason
    await dispatch
    return reason


def _outcome(
    jobs: list[Job],
    records: dict[int, RequestRecord],
    t0: float,
    stopped: float,
    reason: str | None,
    dropped: set[int] | None = None,
) -> list[RequestRecord]:
    """A record per job, in job order: one never sent is recorded as not sent, and one the
    abort cancelled in flight ends at ``stopped``, failed with the reason. Jobs left over when
    the point's duration ended (``send_until``) are not part of the run."""
    out = []
    for job in jobs:
        record = records.get(job.index)
        if dropped and job.index in dropped:
            continue
        if record is None and reason is None:
            continue  # the duration ended before it was due
        if record is None:
            out.append(not_sent(job.index, job.prompt, t0 + job.offset, reason or "the run stopped"))
            continue
        if record.end_time is None:  # cancelled in flight by the abort: it ended now
            record.end_time = stopped
            if record.error is None:
                record.error = f"aborted: {reason}"
        out.append(record)
    return out
