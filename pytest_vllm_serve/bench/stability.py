"""Stability, said out loud: why a point's numbers should not be trusted as they are.

A point is unstable when its measured phase was too short to average over the server's
noise (``--vllm-min-duration``), or when its repeats disagree by more than ``--vllm-max-cv``
on a key metric. Each reason names its fix. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_vllm_serve.bench.metrics import AllRequestsFailedError, BenchmarkMetrics, compute_metrics, metric_values
from pytest_vllm_serve.bench.metrics.steady import steady_state, window_duration
from pytest_vllm_serve.bench.records import RequestRecord

#: The metrics whose spread between repeats decides stability.
KEY_METRICS = ("request_throughput", "output_throughput", "median_ttft_ms", "median_tpot_ms", "median_itl_ms")
_MORE_WORK = "send more prompts (--vllm-num-prompts), bound the point by time (--vllm-duration 30)"


def stability_reasons(
    duration: float, min_duration: float, cvs: Mapping[str, float | None], max_cv: float, repeats: int
) -> list[str]:
    """Why the point is unstable (empty: it is not)."""
    reasons = []
    if min_duration and duration < min_duration:
        reasons.append(
            f"the measured phase lasted {duration:.1f} s, under --vllm-min-duration {min_duration:g} s: "
            f"{_MORE_WORK}, or repeat it (--vllm-repeats 5)"
        )
    noisy = {name: cv for name, cv in cvs.items() if name in KEY_METRICS and cv is not None and cv > max_cv}
    if noisy:
        spread = ", ".join(f"{name} {cv:.1f} %" for name, cv in noisy.items())
        reasons.append(
            f"its {repeats} repeats vary more than --vllm-max-cv {max_cv:g} % (CV: {spread}): "
            f"{_MORE_WORK}, or raise --vllm-repeats"
        )
    return reasons


def stability(reasons: Sequence[str]) -> dict[str, Any]:
    return {"stable": not reasons, "reasons": list(reasons)}


def steady_state_values(
    records: Sequence[RequestRecord], concurrency: int | None, **kwargs: Any
) -> dict[str, float] | None:
    """The metrics of the requests sent after the ramp-up (the first ``concurrency``) and
    finished before the drain (the last ``concurrency``); None for an uncapped point, or one
    too small to have a steady state. ``kwargs`` go to compute_metrics."""
    if not concurrency:
        return None
    kept = steady_state(records, concurrency)
    if not kept:
        return None
    try:
        metrics: BenchmarkMetrics = compute_metrics(kept, window_duration(kept), **kwargs)
    except AllRequestsFailedError:
        return None
    values = metric_values(metrics)
    values["num_requests"] = float(len(kept))
    return values
