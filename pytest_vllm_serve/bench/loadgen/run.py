"""One load-generator run's values: what it sends (:class:`LoadPlan`), when it is cut short
(:class:`Stop`), what it measured (:class:`LoadResult`, :func:`run_duration`) and how it
reports progress (``Progress``).

Their own module because both ways of running hold them: one process (``generator.py``)
and several (``parent.py``, which ships the plan to every worker in a ``frames.Plan``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_vllm_serve.bench.client import Prompt, RequestOptions
from pytest_vllm_serve.bench.loadgen.drive import Abort
from pytest_vllm_serve.bench.records import RequestRecord
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.stall import StallWatch
from pytest_vllm_serve.bench.workloads.conversation import Conversation

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
    send_for: float | None = None  # --vllm-duration: seconds of sending; the prompts left are not sent
    #: multi-turn sessions (bench/loadgen/conversations.py), one per arrival; then ``prompts``
    #: are their first turns (the warmup's), and the run is one process
    conversations: tuple[Conversation, ...] | None = None
    think_time: float = 0.0  # seconds between an answer and the session's next turn

    @property
    def requests(self) -> int:
        """How many requests the measured phase sends."""
        if self.conversations is None:
            return len(self.prompts)
        return sum(len(c.turns) for c in self.conversations)


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


def run_duration(records: list[RequestRecord], t0: float) -> float:
    """vLLM's benchmark duration: from ``t0`` until the last request ended, whatever its
    outcome (vLLM waits for every request, failed ones included). Requests that were
    never sent have no end and do not count."""
    ends = [r.end_time for r in records if r.end_time is not None]
    return (max(ends) - t0) if ends else 0.0
