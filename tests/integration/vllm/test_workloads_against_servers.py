"""Workloads on a server's tokenizer: the latency server's /tokenize, and exact prompt
lengths on a real vLLM server (the rest: tests/unit/test_workloads.py)."""

from __future__ import annotations

import httpx

from pytest_vllm_serve.bench.workloads import (
    RandomWorkload,
    server_tokenizer,
)
from pytest_vllm_serve.tools.latency_server import running


def test_server_tokenizer_through_tokenize_endpoints():
    with running() as url, httpx.Client(base_url=url) as client:
        tokenizer = server_tokenizer(client, "latency-server")
        prompts = RandomWorkload(40, 3, num_prompts=3).prompts(tokenizer)
        assert [len(tokenizer.encode(p.text)) for p in prompts] == [40, 40, 40]


def test_exact_length_on_the_real_server(vllm_server):
    tokenizer = server_tokenizer(vllm_server.client, vllm_server.model)
    prompt = RandomWorkload(100, 4, num_prompts=1, seed=9).prompts(tokenizer)[0]
    response = vllm_server.client.post(
        "/v1/completions", json={"model": vllm_server.model, "prompt": prompt.text, "max_tokens": 4}
    )
    assert response.json()["usage"]["prompt_tokens"] == 100
