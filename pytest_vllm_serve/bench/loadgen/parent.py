"""The parent's side of a multi-process run: start the workers, deal them the jobs, gather.

The parent deals the jobs round-robin to ``plan.processes`` client processes
(``worker.py``), which share one ``t0`` and one concurrency cap (``slots.py``), and
talks to each in the frames of ``frames.py`` (the protocol, in order, is there). A
reader thread per worker queues that worker's frames; the parent follows them for
progress and for the stall and abort watch (``run.Stop``), and stops every worker
(SIGUSR1) when the watch has a reason, keeping what they measured.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from pytest_vllm_serve.bench.loadgen.drive import not_sent
from pytest_vllm_serve.bench.loadgen.frames import (
    Closed,
    Done,
    Error,
    JobSpec,
    Plan,
    Progress,
    Ready,
    Start,
    read_frame,
    write_frame,
)
from pytest_vllm_serve.bench.loadgen.run import LoadPlan, LoadResult, Stop, run_duration
from pytest_vllm_serve.bench.loadgen.run import Progress as ProgressReport
from pytest_vllm_serve.bench.loadgen.slots import SlotPipe, close_slots, create_slots
from pytest_vllm_serve.bench.records import RequestRecord

#: A client process, as the parent started it.
Worker = subprocess.Popen[bytes]
#: The frames the parent's readers queue: (worker rank, a worker's frame or ``Closed``).
Frames = queue.Queue[tuple[int, object]]


def run_multi(
    plan: LoadPlan,
    offsets: list[float],
    warmups: list[RequestRecord],
    progress: ProgressReport | None,
    interval: float,
    stop: Stop,
    before_measure: Callable[[], None] | None = None,
) -> LoadResult:
    """Deal the jobs round-robin to worker subprocesses that share one t0 and one cap;
    ``before_measure`` runs once every worker is ready, right before that t0.

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
        return _gather_workers(plan, jobs, offsets, warmups, workers, pipe, progress, interval, stop, before_measure)
    finally:
        if pipe:
            close_slots(pipe)


def _stop_workers(
    workers: list[Worker],
    frames: Frames,
    jobs: list[JobSpec],
    gathered: list[RequestRecord],
    done: set[int],
    reason: str,
    t0: float,
    grace: float = 5.0,
) -> list[RequestRecord]:
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
        if isinstance(frame, Done):
            gathered += frame.records
        if isinstance(frame, (Done, Error, Closed)):
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


def _pump(frames: Frames, rank: int, stream: IO[bytes]) -> None:
    """Queue every frame one worker writes, then ``Closed`` when its stdout ends."""
    while True:
        try:
            frames.put((rank, read_frame(stream)))
        except Exception as exc:  # EOF: the worker ended
            frames.put((rank, Closed(str(exc))))
            return


def _start_workers(
    plan: LoadPlan,
    jobs: list[JobSpec],
    workers: list[Worker],
    pipe: SlotPipe | None,
    frames: Frames,
    before_measure: Callable[[], None] | None = None,
) -> float:
    """Hand each worker its round-robin share, wait until every one is ``Ready``, run
    ``before_measure``, and start them all on one ``t0``, which it returns."""
    for rank, worker in enumerate(workers):
        write_frame(worker.stdin, Plan(plan, pipe, tuple(jobs[rank :: plan.processes])))
        threading.Thread(target=_pump, args=(frames, rank, worker.stdout), daemon=True).start()
    ready = 0
    while ready < len(workers):
        rank, frame = frames.get(timeout=120)
        if not isinstance(frame, Ready):
            detail = frame.message if isinstance(frame, (Error, Closed)) else repr(frame)
            raise RuntimeError(f"client process {rank} failed to start: {detail}")
        ready += 1
    if before_measure is not None:
        before_measure()
    t0 = time.perf_counter() + 0.05  # a moment for every worker to read it
    for worker in workers:
        write_frame(worker.stdin, Start(t0))
    return t0


@dataclass
class _Tally:
    """What the parent knows of its running workers, from their frames."""

    t0: float
    workers: int
    records: list[RequestRecord] = field(default_factory=list)
    cpu: float = 0.0
    done: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    status: list[tuple[int, int]] = field(init=False)  # (finished, failed) per worker
    activity: list[tuple[float, int]] = field(init=False)  # (last byte, in flight) per worker

    def __post_init__(self) -> None:
        self.status = [(0, 0)] * self.workers
        self.activity = [(self.t0, 0)] * self.workers

    def take(self, rank: int, frame: object) -> None:
        if isinstance(frame, Progress):
            self.status[rank] = (frame.finished, frame.failed)
            self.activity[rank] = (frame.last_byte, frame.in_flight)
        elif isinstance(frame, Done):
            self.records += frame.records
            self.cpu += frame.cpu_seconds
            self.done.add(rank)
        elif isinstance(frame, (Error, Closed)) and rank not in self.done:
            self.errors.append(f"client process {rank}: {frame.message}")
            self.done.add(rank)

    def counts(self) -> tuple[int, int]:
        return sum(s[0] for s in self.status), sum(s[1] for s in self.status)

    def stop_reason(self, stop: Stop) -> str | None:
        """``stop``'s verdict on the workers still running: their last byte, their requests in flight."""
        if not stop.watching:
            return None
        busy = [a for rank, a in enumerate(self.activity) if rank not in self.done]
        return stop.check(max((a[0] for a in busy), default=self.t0), sum(a[1] for a in busy))


def _follow(
    tally: _Tally, frames: Frames, total: int, progress: ProgressReport | None, interval: float, stop: Stop
) -> str | None:
    """Take the workers' frames until every one is done, reporting progress every
    ``interval``; return early with ``stop``'s reason once it has one."""
    last = time.monotonic()
    while len(tally.done) < tally.workers:
        try:
            rank, frame = frames.get(timeout=0.5)
        except queue.Empty:
            pass
        else:
            tally.take(rank, frame)
        if progress and time.monotonic() - last >= interval:
            progress(*tally.counts(), total)
            last = time.monotonic()
        reason = tally.stop_reason(stop)
        if reason:
            return reason
    return None


def _close_workers(workers: list[Worker]) -> None:
    """Close every worker's stdin and wait for it to end (killed after 10 s)."""
    for worker in workers:
        try:
            worker.stdin.close()
        except OSError:
            pass
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()


def _gather_workers(
    plan: LoadPlan,
    jobs: list[JobSpec],
    offsets: list[float],
    warmups: list[RequestRecord],
    workers: list[Worker],
    pipe: SlotPipe | None,
    progress: ProgressReport | None,
    interval: float,
    stop: Stop,
    before_measure: Callable[[], None] | None = None,
) -> LoadResult:
    """Run the started workers through the protocol of ``frames.py`` and gather their records;
    when ``stop`` has a reason (the server died or stalled), stop them and keep what they measured."""
    frames: Frames = queue.Queue()
    try:
        t0 = _start_workers(plan, jobs, workers, pipe, frames, before_measure)
        tally = _Tally(t0, len(workers))
        reason = _follow(tally, frames, len(plan.prompts), progress, interval, stop)
        if reason:
            records = _stop_workers(workers, frames, jobs, tally.records, tally.done, reason, t0)
            duration = run_duration(records, t0)
            return LoadResult(records, warmups, t0, duration, offsets, tally.cpu, plan.processes, errors=[reason])
    finally:
        _close_workers(workers)
    if tally.errors:
        raise RuntimeError("; ".join(tally.errors))
    tally.records.sort(key=lambda r: r.index)
    return LoadResult(tally.records, warmups, t0, run_duration(tally.records, t0), offsets, tally.cpu, plan.processes)
