"""Workloads: exact token lengths, seeding, ShareGPT sampling and its errors (a server's
tokenizer, from the latency server and from vLLM: tests/integration/vllm/test_workloads_against_servers.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from pytest_vllm_serve.bench.workloads import (
    LocalTokenizer,
    RandomWorkload,
    ShareGPTWorkload,
    SonnetWorkload,
    server_tokenizer,
    synthetic_sharegpt,
)
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.models import ensure_tiny_model


@pytest.fixture(scope="module")
def local_tokenizer(tmp_path_factory, vllm_session):
    return LocalTokenizer(ensure_tiny_model(vllm_session.settings.cache_dir))


@pytest.mark.parametrize("length", [1, 7, 64, 513])
def test_random_prompts_have_the_exact_length(local_tokenizer, length):
    prompts = RandomWorkload(length, 5, num_prompts=8, seed=1).prompts(local_tokenizer)
    assert [len(local_tokenizer.encode(p.text)) for p in prompts] == [length] * 8
    assert all(p.prompt_len == length and p.output_len == 5 for p in prompts)
    assert len({p.text for p in prompts}) == 8, "prompts must differ (no accidental prefix-cache hits)"


def test_seeded(local_tokenizer):
    a = RandomWorkload(32, 4, num_prompts=4, seed=3).prompts(local_tokenizer)
    assert a == RandomWorkload(32, 4, num_prompts=4, seed=3).prompts(local_tokenizer)
    assert a != RandomWorkload(32, 4, num_prompts=4, seed=4).prompts(local_tokenizer)


def test_sonnet_prompts_share_a_prefix(local_tokenizer):
    prompts = SonnetWorkload(input_len=120, output_len=10, prefix_len=50, num_prompts=5).prompts(local_tokenizer)
    prefix = local_tokenizer.decode(local_tokenizer.encode(prompts[0].text)[:50])
    assert all(p.text.startswith(prefix) for p in prompts)
    assert len({p.text for p in prompts}) == 5
    assert all(abs(len(local_tokenizer.encode(p.text)) - 120) <= 1 for p in prompts)


def test_a_server_without_tokenize_names_the_fix():
    def handler(request):
        return httpx.Response(404, json={"detail": "Not Found"})

    with httpx.Client(base_url="http://x", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ConfigError, match="pass --vllm-tokenizer PATH"):
            server_tokenizer(client, "m")


def test_sharegpt_sampling(local_tokenizer, tmp_path):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(synthetic_sharegpt(60, seed=2)))
    workload = ShareGPTWorkload(path, num_prompts=10, seed=5, max_input_len=100, max_total_len=250)
    prompts = workload.prompts(local_tokenizer)
    assert len(prompts) == 10
    assert all(4 <= p.prompt_len <= 100 and p.prompt_len + p.output_len <= 250 for p in prompts)
    assert prompts == ShareGPTWorkload(path, num_prompts=10, seed=5, max_input_len=100, max_total_len=250).prompts(
        local_tokenizer
    )
    fixed = ShareGPTWorkload(path, num_prompts=3, output_len=7).prompts(local_tokenizer)
    assert [p.output_len for p in fixed] == [7, 7, 7]


def test_sharegpt_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        ShareGPTWorkload(tmp_path / "nope.json")
    assert "nothing is downloaded" in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not readable JSON"),
        ('{"a": 1}', "expected a JSON list"),
        ('[{"x": 1}]', "holds no ShareGPT conversations"),
    ],
)
def test_sharegpt_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        ShareGPTWorkload(path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_len": 0, "output_len": 1},
        {"input_len": 5, "output_len": -2},
        {"input_len": 5, "output_len": 5, "num_prompts": 0},
    ],
)
def test_non_positive_lengths_are_rejected(kwargs):
    with pytest.raises(ConfigError, match="must be a positive integer"):
        RandomWorkload(**kwargs)
