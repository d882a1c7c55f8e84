"""Offline benchmark: pooling across DP ranks and engine arguments (a real DP=2 run:
tests/integration/vllm/test_offline_engine.py)."""

from __future__ import annotations

import pytest

from pytest_vllm_serve.bench.offline.engine import RankResult, combine
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.offline import engine_kwargs


def rank(i, duration, ttfts, tokens=3):
    n = len(ttfts)
    return RankResult(i, duration, [4] * n, [tokens] * n, ttfts, ttfts, [0.01] * n, [t + 0.02 for t in ttfts])


def test_ranks_are_pooled_not_averaged():
    # rank 0: TTFTs 1, 2, 3 (median 2); rank 1: 10, 20 (median 15).
    # Averaging medians (the reference's way) would say 8.5; the pooled median of 1, 2, 3, 10, 20 is 3.
    metrics = combine([rank(0, 4.0, [1.0, 2.0, 3.0]), rank(1, 5.0, [10.0, 20.0])])
    assert metrics.ttft.median == 3.0
    assert metrics.duration == 5.0  # the slowest rank
    assert metrics.num_requests == 5
    assert metrics.request_throughput == 5 / 5.0
    assert metrics.output_throughput == 15 / 5.0
    assert metrics.total_token_throughput == (20 + 15) / 5.0
    assert metrics.ttft.percentiles[99] == pytest.approx(19.6)  # of the pooled samples, not the max of ranks' p99


def test_single_token_outputs_have_no_tpot():
    r = RankResult(0, 1.0, [4], [1], [0.1], [0.1], [], [0.1])
    assert combine([r]).tpot is None


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--max-model-len", "8192"], {"max_model_len": 8192}),
        (["--enforce-eager"], {"enforce_eager": True}),
        (["--no-enforce-eager"], {"enforce_eager": False}),
        (["--gpu-memory-utilization=0.5"], {"gpu_memory_utilization": 0.5}),
        (["--compilation-config", '{"level": 0}'], {"compilation_config": {"level": 0}}),
        (["--dtype", "bfloat16"], {"dtype": "bfloat16"}),
    ],
)
def test_serve_args_become_engine_arguments(args, expected):
    assert engine_kwargs(args) == expected


def test_a_positional_serve_arg_is_refused():
    with pytest.raises(ConfigError, match="cannot turn the serve argument"):
        engine_kwargs(["model-name"])
