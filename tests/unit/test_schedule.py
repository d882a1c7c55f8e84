"""Arrival schedules: vllm bench serve's rules, seeded and absolute."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_vllm_serve.bench.schedule import Ramp, Schedule, arrival_offsets, target_rate
from pytest_vllm_serve.errors import ConfigError


def test_rate_inf_sends_everything_at_once():
    assert arrival_offsets(5, Schedule(rate=math.inf)) == [0.0] * 5


def test_constant_rate_is_evenly_spaced():
    offsets = arrival_offsets(4, Schedule(rate=2, burstiness=math.inf))
    assert offsets == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_poisson_is_rescaled_to_end_at_n_over_rate():
    offsets = arrival_offsets(200, Schedule(rate=10, seed=3))
    assert offsets[-1] == pytest.approx(200 / 10)
    assert all(b >= a for a, b in zip(offsets, offsets[1:]))
    gaps = np.diff([0.0, *offsets])
    # Exponential gaps: the coefficient of variation is ~1 (a constant rate would be 0).
    assert 0.8 < gaps.std() / gaps.mean() < 1.2


def test_gamma_burstiness_changes_the_spread_not_the_mean():
    steady = np.diff(arrival_offsets(500, Schedule(rate=10, burstiness=4, seed=1)))
    bursty = np.diff(arrival_offsets(500, Schedule(rate=10, burstiness=0.25, seed=1)))
    assert steady.mean() == pytest.approx(bursty.mean(), rel=0.05)
    assert bursty.std() > 3 * steady.std()


def test_seeded():
    assert arrival_offsets(50, Schedule(rate=5, seed=7)) == arrival_offsets(50, Schedule(rate=5, seed=7))
    assert arrival_offsets(50, Schedule(rate=5, seed=7)) != arrival_offsets(50, Schedule(rate=5, seed=8))


@pytest.mark.parametrize("strategy", ["linear", "exponential"])
def test_ramp_up_goes_from_start_to_end(strategy):
    ramp = Ramp(strategy, 1, 16)
    assert ramp.rate_at(0, 11) == pytest.approx(1)
    assert ramp.rate_at(10, 11) == pytest.approx(16)
    middle = ramp.rate_at(5, 11)
    assert middle == pytest.approx(8.5 if strategy == "linear" else 4.0)
    offsets = arrival_offsets(300, Schedule(ramp=ramp, burstiness=math.inf))
    gaps = np.diff(offsets)
    assert gaps[0] > gaps[-1] * 10  # sends speed up


def test_target_rate_is_reported():
    schedule = Schedule(rate=4)
    assert target_rate(schedule, arrival_offsets(10, schedule)) == 4
    ramp = Schedule(ramp=Ramp("linear", 1, 3), burstiness=math.inf)
    assert 1 < target_rate(ramp, arrival_offsets(10, ramp)) < 3


@pytest.mark.parametrize("rate", [0, -1, float("nan"), "fast", True])
def test_bad_rates_are_rejected(rate):
    with pytest.raises(ConfigError, match="request rate must be a positive number"):
        Schedule(rate=rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", [0, -4, 2.5, True])
def test_bad_concurrency_is_rejected(cap):
    with pytest.raises(ConfigError, match="max_concurrency must be a positive integer"):
        Schedule(max_concurrency=cap)  # type: ignore[arg-type]


def test_bad_burstiness_and_ramps_are_rejected():
    with pytest.raises(ConfigError, match="burstiness must be positive"):
        Schedule(rate=1, burstiness=0)
    with pytest.raises(ConfigError, match="unknown ramp-up strategy"):
        Ramp("sine", 1, 2)
    with pytest.raises(ConfigError, match="positive finite rate"):
        Ramp("linear", 0, 2)
