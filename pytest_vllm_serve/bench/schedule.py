"""Arrival schedules: when each request is due, as offsets from the start.

Pure and seeded. The same rules as ``vllm bench serve``:

* rate ``inf``: every request is due at once;
* Poisson arrivals (burstiness 1) or gamma-distributed gaps (shape =
  burstiness, scale = 1 / (rate x burstiness)); burstiness ``inf`` is a
  constant rate;
* without ramp-up, the gaps are rescaled so the last request is due at exactly
  n / rate seconds (vLLM does this so seeds do not move the throughput);
* linear or exponential ramp-up from ``start`` to ``end`` requests/s over the run;
* a replay (``Schedule.replay(times)``): every request at its own given offset, such as a
  trace's time stamps; its ``rate`` is the mean rate, for sizing the client.

The offsets are absolute: the load generator sleeps until ``t0 + offset``, so
lateness never accumulates (the schedule does not drift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from pytest_vllm_serve.errors import ConfigError

RAMPS = ("linear", "exponential")


@dataclass(frozen=True)
class Ramp:
    strategy: str  # "linear" or "exponential"
    start_rps: float
    end_rps: float

    def __post_init__(self) -> None:
        if self.strategy not in RAMPS:
            raise ConfigError(f"unknown ramp-up strategy {self.strategy!r}.\n  fix: use linear or exponential")
        for name in ("start_rps", "end_rps"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"ramp-up {name} must be a positive finite rate, got {value!r}")

    def rate_at(self, index: int, total: int) -> float:
        progress = index / max(total - 1, 1)
        if self.strategy == "linear":
            return self.start_rps + (self.end_rps - self.start_rps) * progress
        return self.start_rps * (self.end_rps / self.start_rps) ** progress


@dataclass(frozen=True)
class Schedule:
    """How requests arrive. ``rate`` in requests/s (``math.inf`` for all at once)."""

    rate: float = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None
    ramp: Ramp | None = None
    seed: int = 0
    times: tuple[float, ...] | None = None  # a replay's offsets (s), one per request, non-decreasing

    @classmethod
    def replay(cls, times: list[float] | tuple[float, ...], max_concurrency: int | None = None) -> Schedule:
        """Each request at its own offset (seconds from the start), as given."""
        offsets = tuple(float(t) for t in times)
        if not offsets or any(not math.isfinite(t) or t < 0 for t in offsets):
            raise ConfigError("a replayed schedule needs one finite, non-negative offset per request")
        if any(b < a for a, b in pairwise(offsets)):
            raise ConfigError("a replayed schedule's offsets must not decrease: sort the trace by its time stamps")
        span = offsets[-1] - offsets[0]
        rate = len(offsets) / span if span > 0 else math.inf
        return cls(rate=rate, max_concurrency=max_concurrency, times=offsets)

    def __post_init__(self) -> None:
        if (
            isinstance(self.rate, bool)
            or not isinstance(self.rate, (int, float))
            or math.isnan(self.rate)
            or self.rate <= 0
        ):
            raise ConfigError(
                f"request rate must be a positive number or inf, got {self.rate!r}.\n  fix: e.g. rate=4 or rate=inf"
            )
        if not self.burstiness > 0:
            raise ConfigError(
                f"burstiness must be positive, got {self.burstiness!r} (1 = Poisson, inf = constant rate)"
            )
        if self.max_concurrency is not None and (
            isinstance(self.max_concurrency, bool)
            or not isinstance(self.max_concurrency, int)
            or self.max_concurrency <= 0
        ):
            raise ConfigError(f"max_concurrency must be a positive integer, got {self.max_concurrency!r}")

    def describe(self) -> str:
        if self.times is not None:
            span = self.times[-1] - self.times[0]
            return f"replay of {len(self.times)} requests over {span:.3g} s" + (
                f", max concurrency {self.max_concurrency}" if self.max_concurrency else ""
            )
        if self.ramp:
            arrival = f"{self.ramp.strategy} ramp {self.ramp.start_rps:g}->{self.ramp.end_rps:g} req/s"
        elif math.isinf(self.rate):
            arrival = "rate inf (all at once)"
        elif math.isinf(self.burstiness):
            arrival = f"constant {self.rate:g} req/s"
        elif self.burstiness == 1:
            arrival = f"Poisson {self.rate:g} req/s"
        else:
            arrival = f"gamma {self.rate:g} req/s, burstiness {self.burstiness:g}"
        cap = f", max concurrency {self.max_concurrency}" if self.max_concurrency else ""
        return arrival + cap


def arrival_offsets(n: int, schedule: Schedule) -> list[float]:
    """Seconds from the start at which each of ``n`` requests is due (non-decreasing)."""
    if n <= 0:
        return []
    if schedule.times is not None:
        if len(schedule.times) != n:
            raise ConfigError(f"a replayed schedule has {len(schedule.times)} offsets for {n} requests")
        return list(schedule.times)
    rng = np.random.default_rng(schedule.seed)
    gaps = np.zeros(n)
    for i in range(n):
        rate = schedule.ramp.rate_at(i, n) if schedule.ramp else schedule.rate
        if math.isinf(rate):
            gaps[i] = 0.0
        elif math.isinf(schedule.burstiness):
            gaps[i] = 1.0 / rate
        else:
            gaps[i] = rng.gamma(shape=schedule.burstiness, scale=1.0 / (rate * schedule.burstiness))
    offsets = np.cumsum(gaps)
    if schedule.ramp is None and offsets[-1] > 0:
        offsets *= (n / schedule.rate) / offsets[-1]
    return offsets.tolist()


def target_rate(schedule: Schedule, offsets: list[float]) -> float:
    """The request rate the schedule asks for, to print beside the achieved one."""
    if schedule.ramp is None and schedule.times is None:
        return schedule.rate
    span = offsets[-1] - offsets[0] if len(offsets) > 1 else 0.0
    return (len(offsets) - 1) / span if span > 0 else math.inf


#: --vllm-duration: at most this many requests per point, and, under a cap, as many as one
#: request per slot every 10 ms would send (a point that is faster still ends early, and says so).
DURATION_MAX_REQUESTS = 200_000
DURATION_REQUESTS_PER_SLOT_SECOND = 100


def requests_for_duration(schedule: Schedule, seconds: float, prompts: int) -> int | None:
    """How many requests to plan for ``seconds`` of sending at ``schedule`` (at least ``prompts``),
    or None where a duration does not apply: an uncapped rate-inf point sends all at once, and a
    replay sends what it replays."""
    if schedule.times is not None:
        return None
    if math.isfinite(schedule.rate):
        wanted = math.ceil(schedule.rate * seconds) + 1
    elif schedule.max_concurrency:
        wanted = math.ceil(seconds * schedule.max_concurrency * DURATION_REQUESTS_PER_SLOT_SECOND)
    else:
        return None
    return min(DURATION_MAX_REQUESTS, max(prompts, wanted))
