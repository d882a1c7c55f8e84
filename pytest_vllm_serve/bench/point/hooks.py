"""MeasureHook: what runs around a point's measured phase (the profilers, or yours)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class MeasureHook(Protocol):
    """Runs around a point's measured phase (``vllm_bench.hooks``): the profilers of
    bench/profiling.py, or your own. Subclass it: ``in_process`` defaults to False."""

    #: True: it sees only this process, so the point runs one client process.
    in_process: bool = False

    def before_measure(self) -> None: ...

    def after_measure(self) -> None: ...
