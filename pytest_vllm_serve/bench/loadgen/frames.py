"""The typed frames between a multi-process run's parent and its client processes.

The parent (``parent.py``) starts one worker per extra client process
(``python -m pytest_vllm_serve.bench.loadgen.worker``) and talks to each over the
worker's stdin and stdout, one length-prefixed pickle per frame (:func:`write_frame`,
:func:`read_frame`). In order:

1. parent -> worker: :class:`Plan`: the run's plan, its slot pipe, this worker's jobs.
2. worker -> parent: :class:`Ready`: bodies encoded, connections open.
3. parent -> worker: :class:`Start`: the run's one ``t0``, sent once every worker is ready.
4. worker -> parent: :class:`Progress`, about once a second while it sends.
5. worker -> parent: :class:`Done`: its records and CPU seconds; or, at any step where it
   fails, :class:`Error` (and it exits 1).

After ``Start`` the parent may send a worker SIGUSR1 (the server died or stalled): the
worker cancels what it has in flight and still ends with ``Done``. :class:`Closed` is
never written: the parent's reader makes it when a worker's stdout ends.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from typing import IO, TypeVar

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.bench.loadgen.run import LoadPlan
from pytest_vllm_serve.bench.loadgen.slots import SlotPipe
from pytest_vllm_serve.bench.records import RequestRecord

_HEADER = struct.Struct("!Q")

#: A job as the parent deals it: (index in the workload, prompt, offset of its due time from t0).
JobSpec = tuple[int, Prompt, float]


@dataclass(frozen=True, slots=True)
class Plan:
    """Parent -> worker, first: what this worker sends. ``jobs`` are (index, prompt, offset),
    its round-robin share of the run; ``slots`` is the run's one cap (None: no cap)."""

    plan: LoadPlan
    slots: SlotPipe | None
    jobs: tuple[JobSpec, ...]


@dataclass(frozen=True, slots=True)
class Ready:
    """Worker -> parent: ready to send on the parent's ``Start``."""


@dataclass(frozen=True, slots=True)
class Start:
    """Parent -> worker: send each job at ``t0 + offset`` (``perf_counter``, one clock for all)."""

    t0: float


@dataclass(frozen=True, slots=True)
class Progress:
    """Worker -> parent, about once a second: requests ended so far (``failed`` of them
    failed), and the worker's stall signals, its last byte (``perf_counter``) and requests
    in flight."""

    finished: int
    failed: int
    last_byte: float
    in_flight: int


@dataclass(frozen=True, slots=True)
class Done:
    """Worker -> parent, last: a record per job and the CPU seconds of its measured phase."""

    records: tuple[RequestRecord, ...]
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class Error:
    """Worker -> parent, last: the worker failed (``message``: the exception's type and text)."""

    message: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The parent's own: a worker's stdout ended, or held something that is not a frame."""

    message: str


#: What a worker writes.
WorkerFrame = Ready | Progress | Done | Error
F = TypeVar("F", Plan, Start)


def write_frame(stream: IO[bytes], frame: Plan | Start | WorkerFrame) -> None:
    data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> object:
    """The next frame on ``stream``; ``EOFError`` when the peer closed it."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("peer closed the pipe")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("peer closed the pipe mid-frame")
    return pickle.loads(data)


def read_expected(stream: IO[bytes], kind: type[F]) -> F:
    """The next frame, which must be a ``kind`` (a worker's reads: ``Plan``, then ``Start``)."""
    frame = read_frame(stream)
    if not isinstance(frame, kind):
        raise TypeError(f"expected a {kind.__name__} frame, got {type(frame).__name__}")
    return frame
