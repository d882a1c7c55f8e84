"""The steady-state window of a run: without the ramp-up at its start and the drain at its end.

With a concurrency cap of C, the first C requests are sent into an idle server (ramp-up)
and the last C finish on a server that is emptying (drain); neither is the load the
point is meant to measure. :func:`steady_state` keeps the requests between them, and
:func:`window_duration` gives the duration to pass to :func:`.compute_metrics` with
them::

    kept = steady_state(records, concurrency)
    if kept:
        metrics = compute_metrics(kept, window_duration(kept), ...)

Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pytest_vllm_serve.bench.records import RequestRecord


def request_end(record: RequestRecord) -> float:
    """When ``record`` ended: its ``end_time``, else its last chunk, else its send time."""
    if record.end_time is not None:
        return record.end_time
    return record.chunk_times[-1] if record.chunk_times else record.send_time


def steady_state(records: Iterable[RequestRecord], concurrency: int) -> list[RequestRecord]:
    """The measured (non-warmup) records without the ramp-up and the drain, in workload order.

    The ramp-up is the first ``concurrency`` requests by send time, the drain the last
    ``concurrency`` by end time (:func:`request_end`); ties go by workload index. A
    request in both is dropped once, so more than ``len - 2 * concurrency`` may remain.
    Failed requests are kept, as :func:`.compute_metrics` counts them. With fewer than
    ``2 * concurrency + 1`` measured records there is no steady state: the result is
    empty. ``concurrency`` 0 drops nothing; a negative one raises ValueError.
    """
    if concurrency < 0:
        raise ValueError(f"concurrency must be at least 0, got {concurrency!r}")
    measured = [r for r in records if not r.warmup]
    if len(measured) < 2 * concurrency + 1:
        return []
    by_send = sorted(measured, key=lambda r: (r.send_time, r.index))
    by_end = sorted(measured, key=lambda r: (request_end(r), r.index))
    dropped = {id(r) for r in by_send[:concurrency]}
    dropped |= {id(r) for r in by_end[len(by_end) - concurrency :]}
    return sorted((r for r in measured if id(r) not in dropped), key=lambda r: r.index)


def window_duration(records: Sequence[RequestRecord]) -> float:
    """Seconds from the first send among ``records`` to the last end (:func:`request_end`).

    Raises ValueError for no records: an empty steady state has no duration.
    """
    if not records:
        raise ValueError("window_duration needs at least one record (the steady state is empty)")
    return max(request_end(r) for r in records) - min(r.send_time for r in records)
