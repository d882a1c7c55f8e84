"""The load generator's tests (tests/unit/test_loadgen.py and its servers' half): their prompts,
their plan, and how full a concurrency cap was kept."""

from __future__ import annotations

from pytest_vllm_serve.bench.client import Prompt, RequestOptions
from pytest_vllm_serve.bench.loadgen.generator import LoadPlan
from pytest_vllm_serve.bench.schedule import Schedule

PROMPTS = tuple(Prompt("one two three four", 4, 8) for _ in range(24))


def plan(url, schedule=Schedule(), prompts=PROMPTS, endpoint="chat", token_ids=False, **kw):
    options = RequestOptions(model="latency-server", endpoint=endpoint, token_ids=token_ids)
    return LoadPlan(url, options, prompts, schedule, **kw)


def below_cap_fraction(start_times: list[float], latencies: list[float], cap: int) -> float:
    """Share of the sending window (first send to last send) during which fewer than
    ``cap`` requests were in flight, each request in flight over [start, start + latency)."""
    first, last = min(start_times), max(start_times)
    events = sorted([(s, 1) for s in start_times] + [(s + d, -1) for s, d in zip(start_times, latencies)])
    below, level, previous = 0.0, 0, first
    for t, delta in events:  # ends sort before starts at the same instant
        lo, hi = max(previous, first), min(t, last)
        if hi > lo and level < cap:
            below += hi - lo
        level, previous = level + delta, t
    return below / (last - first)
