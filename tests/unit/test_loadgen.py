"""The load generator without a server: an unreachable one, the number of client processes,
and the measure of how full a concurrency cap was kept. Against the latency test server:
tests/integration/vllm/test_loadgen_against_servers.py.
"""

from __future__ import annotations

import pytest

from pytest_vllm_serve.bench.loadgen.generator import auto_processes, run_load
from pytest_vllm_serve.bench.schedule import Schedule
from tests.support.loadgen import PROMPTS, below_cap_fraction, plan


def test_below_cap_fraction():
    # cap 2; in flight: [0, 4) and [1, 2) then [3, 5): one request only over [2, 3)
    assert below_cap_fraction([0.0, 1.0, 3.0], [4.0, 1.0, 2.0], 2) == pytest.approx(2 / 3)  # [0,1) and [2,3)


def test_unreachable_server_is_recorded_per_request():
    result = run_load(plan("http://127.0.0.1:9", prompts=PROMPTS[:2], warmup=0))
    assert all(r.error.startswith("ClientConnectorError: Cannot connect to host 127.0.0.1:9") for r in result.records)


def test_auto_processes():
    assert auto_processes(Schedule(rate=10), 100) == 1
    assert auto_processes(Schedule(max_concurrency=4), 10_000) == 1
    assert 1 <= auto_processes(Schedule(rate=10_000), 100_000) <= 64


def test_a_base_url_with_a_path_keeps_it():
    """--vllm-url http://gateway/team-a serves /team-a/v1/completions; each path's URL is parsed once."""
    import asyncio

    from pytest_vllm_serve.bench.loadgen.drive import make_client

    async def urls() -> tuple[str, str, bool]:
        async with make_client("http://gateway:8000/team-a/", {}, 4) as client:
            first = client.url("/v1/completions")
            return str(first), str(client.url("/v1/models")), client.url("/v1/completions") is first

    assert asyncio.run(urls()) == (
        "http://gateway:8000/team-a/v1/completions",
        "http://gateway:8000/team-a/v1/models",
        True,
    )
