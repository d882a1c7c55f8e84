"""The benchmark types of the reference bench.sh.

| type        | workload                                   | arrivals                          |
|-------------|--------------------------------------------|-----------------------------------|
| throughput  | random 512/256                             | rate inf                          |
| prefill     | input 128, 512, 2048, 4096, 16384; out 1   | rate 4                            |
| decode      | input 128; output 128, 256, 512, 1024      | rate 4                            |
| latency     | 128/128, 512/256, 4096/512                 | rate 1                            |
| concurrency | random 512/256                             | rate inf; max concurrency 1..256  |
| longctx     | input 4096, 16384, 32000; output 100       | rate 1, half the prompts          |
| sharegpt    | --vllm-dataset-path                        | rate inf, then 4                  |
| sonnet      | input 550, output 150, shared prefix 200   | rate inf, then 4                  |

When --vllm-sweep-input-len / --vllm-sweep-output-len / --vllm-sweep-concurrency
are given, prefill / decode / concurrency use them instead of these lists.
"""

from __future__ import annotations

import math

import pytest

from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload, ShareGPTWorkload, SonnetWorkload

pytestmark = pytest.mark.benchmark

PREFILL_INPUTS = (128, 512, 2048, 4096, 16384)
DECODE_OUTPUTS = (128, 256, 512, 1024)
LATENCY_PAIRS = ((128, 128), (512, 256), (4096, 512))
CONCURRENCY = (1, 4, 16, 64, 256)
LONGCTX_INPUTS = (4096, 16384, 32000)
RATES_INF_THEN_4 = (math.inf, 4.0)


def ids(name, values):
    return [f"{name}={'inf' if v == math.inf else int(v) if float(v).is_integer() else v}" for v in values]


def pytest_generate_tests(metafunc):
    # Only the lists need the session; read them through the plugin's session object.
    from pytest_vllm_serve.plugin import SESSION_KEY

    s = metafunc.config.stash[SESSION_KEY].bench
    pick = lambda option, default: getattr(s, f"sweep_{option}") if f"vllm_sweep_{option}" in s.given else default  # noqa: E731
    if "prefill_input" in metafunc.fixturenames:
        values = pick("input_len", PREFILL_INPUTS)
        metafunc.parametrize("prefill_input", values, ids=ids("input_len", values))
    if "decode_output" in metafunc.fixturenames:
        values = pick("output_len", DECODE_OUTPUTS)
        metafunc.parametrize("decode_output", values, ids=ids("output_len", values))
    if "type_concurrency" in metafunc.fixturenames:
        values = pick("concurrency", CONCURRENCY)
        metafunc.parametrize("type_concurrency", values, ids=ids("concurrency", values))


def test_throughput(vllm_bench):
    s = vllm_bench.settings
    vllm_bench.run(
        RandomWorkload(s.input_len, s.output_len, s.num_prompts, s.seed), Schedule(seed=s.seed), suite="throughput"
    )


def test_prefill(vllm_bench, prefill_input):
    s = vllm_bench.settings
    vllm_bench.run(
        RandomWorkload(prefill_input, 1, s.num_prompts, s.seed), Schedule(rate=4, seed=s.seed), suite="prefill"
    )


def test_decode(vllm_bench, decode_output):
    s = vllm_bench.settings
    vllm_bench.run(
        RandomWorkload(128, decode_output, s.num_prompts, s.seed), Schedule(rate=4, seed=s.seed), suite="decode"
    )


@pytest.mark.parametrize("pair", LATENCY_PAIRS, ids=[f"in={i}-out={o}" for i, o in LATENCY_PAIRS])
def test_latency(vllm_bench, pair):
    s = vllm_bench.settings
    vllm_bench.run(
        RandomWorkload(pair[0], pair[1], s.num_prompts, s.seed), Schedule(rate=1, seed=s.seed), suite="latency"
    )


def test_concurrency_type(vllm_bench, type_concurrency):
    s = vllm_bench.settings
    vllm_bench.run(
        RandomWorkload(s.input_len, s.output_len, s.prompts_for(type_concurrency), s.seed),
        Schedule(max_concurrency=type_concurrency, seed=s.seed),
        suite="concurrency-type",
        params={"max_concurrency": type_concurrency},
    )


@pytest.mark.parametrize("input_len", LONGCTX_INPUTS, ids=ids("input_len", LONGCTX_INPUTS))
def test_longctx(vllm_bench, input_len):
    s = vllm_bench.settings
    vllm_bench.run(
        RandomWorkload(input_len, 100, max(1, s.num_prompts // 2), s.seed),
        Schedule(rate=1, seed=s.seed),
        suite="longctx",
    )


@pytest.mark.parametrize("rate", RATES_INF_THEN_4, ids=ids("rate", RATES_INF_THEN_4))
def test_sharegpt(vllm_bench, rate):
    s = vllm_bench.settings
    if s.dataset_path is None:
        pytest.skip("the sharegpt type needs a local dataset: pass --vllm-dataset-path FILE (nothing is downloaded)")
    limit = vllm_bench.max_model_len() or 2048
    workload = ShareGPTWorkload(s.dataset_path, s.num_prompts, s.seed, max_total_len=min(2048, limit))
    vllm_bench.run(workload, Schedule(rate=rate, seed=s.seed), suite="sharegpt", params={"request_rate": rate})


@pytest.mark.parametrize("rate", RATES_INF_THEN_4, ids=ids("rate", RATES_INF_THEN_4))
def test_sonnet(vllm_bench, rate):
    s = vllm_bench.settings
    vllm_bench.run(
        SonnetWorkload(550, 150, 200, s.num_prompts, s.seed),
        Schedule(rate=rate, seed=s.seed),
        suite="sonnet",
        params={"request_rate": rate},
    )
