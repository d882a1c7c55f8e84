"""Mean, median, std and percentiles of one latency series, as vLLM computes them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pytest_vllm_serve.bench.metrics.common import DEFAULT_PERCENTILES
from pytest_vllm_serve.errors import ConfigError


@dataclass(frozen=True)
class Stats:
    """Summary of one series, in the series' own unit (seconds for latencies).

    ``std`` is the population standard deviation (``np.std``); percentiles use
    numpy's default linear interpolation, exactly as ``vllm bench serve``.
    """

    count: int
    mean: float
    median: float
    std: float
    percentiles: dict[float, float]  # percentile (0-100) -> value


def percentile_label(p: float) -> str:
    """How vLLM names a percentile in result keys: 99.0 -> "99", 99.9 -> "99.9"."""
    return str(int(p)) if int(p) == p else str(p)


def validate_percentiles(percentiles: Iterable[float]) -> tuple[float, ...]:
    """Percentiles as floats, each finite and within [0, 100], duplicates dropped."""
    out: list[float] = []
    for p in percentiles:
        try:
            value = float(p)
        except (TypeError, ValueError):
            raise ConfigError(
                f"percentile {p!r} is not a number.\n  fix: give numbers from 0 to 100, e.g. 50,90,99"
            ) from None
        if not (math.isfinite(value) and 0 <= value <= 100):
            raise ConfigError(f"percentile {p!r} is outside 0..100.\n  fix: give numbers from 0 to 100, e.g. 50,90,99")
        if value not in out:
            out.append(value)
    return tuple(out)


def compute_stats(values: Sequence[float], percentiles: Iterable[float] = DEFAULT_PERCENTILES) -> Stats:
    """Mean, median, population std and percentiles of ``values`` (at least one)."""
    if len(values) == 0:
        raise ValueError("compute_stats needs at least one value")
    return Stats(
        count=len(values),
        mean=float(np.mean(values)),
        median=float(np.median(values)),
        std=float(np.std(values)),
        percentiles={p: float(np.percentile(values, p)) for p in validate_percentiles(percentiles)},
    )
