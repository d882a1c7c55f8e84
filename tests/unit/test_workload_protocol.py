"""The Workload protocol: what vllm_bench.run() takes, with defaults for the optional members."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from pytest_vllm_serve.bench.client import Prompt
from pytest_vllm_serve.bench.point import VllmBench
from pytest_vllm_serve.bench.settings import BenchSettings
from pytest_vllm_serve.bench.sinks.results import ResultsStore
from pytest_vllm_serve.bench.workloads import RandomWorkload, ShareGPTWorkload, SonnetWorkload, Workload
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.spec import ServerSpec


def test_the_fixed_length_workloads_name_their_longest_request():
    assert RandomWorkload(512, 256).length_limit() == (768, "input 512 + output 256")
    assert SonnetWorkload(input_len=550, output_len=150).length_limit() == (700, "input 550 + output 150")


def test_a_dataset_keeps_to_its_own_limits(tmp_path):
    data = tmp_path / "sharegpt.json"
    data.write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "hi " * 10}, {"from": "gpt", "value": "ok " * 10}]}])
    )
    assert ShareGPTWorkload(data).length_limit() is None


def test_params_are_the_int_float_and_str_fields():
    assert RandomWorkload(64, 32, num_prompts=8, seed=3).params() == {
        "input_len": 64,
        "output_len": 32,
        "num_prompts": 8,
        "seed": 3,
    }


def test_a_subclass_writes_only_name_and_prompts():
    @dataclass(frozen=True)
    class Fixed(Workload):
        text: str = "hello"
        name: str = "fixed"

        def prompts(self, tokenizer):
            return [Prompt(self.text, 1, 4)]

    workload = Fixed()
    assert isinstance(workload, Workload)
    assert workload.length_limit() is None
    assert workload.params() == {"text": "hello"}


def test_something_else_is_refused_with_the_fix(tmp_path):
    class NotAWorkload:
        def prompts(self, tokenizer):
            return []

    bench = VllmBench(
        server=RunningServer(url="http://127.0.0.1:9", model="m", spec=ServerSpec()),
        settings=BenchSettings(),
        store=ResultsStore(tmp_path),
        node_id="t::x",
    )
    with pytest.raises(ConfigError, match="subclass pytest_vllm_serve.bench.workloads.Workload"):
        bench.run(NotAWorkload())


def test_a_hook_subclass_gets_in_process_false_and_a_stranger_is_refused(tmp_path):
    from pytest_vllm_serve.bench.point import MeasureHook
    from pytest_vllm_serve.bench.profiling import ClientTraceHook, ServerProfileHook

    class Mine(MeasureHook):
        def before_measure(self):
            pass

        def after_measure(self):
            pass

    assert isinstance(Mine(), MeasureHook) and Mine().in_process is False
    assert ClientTraceHook.in_process is True and ServerProfileHook.in_process is False

    class Stranger:  # before_measure and after_measure, but no in_process
        def before_measure(self):
            pass

        def after_measure(self):
            pass

    bench = VllmBench(
        server=RunningServer(url="http://127.0.0.1:9", model="m", spec=ServerSpec()),
        settings=BenchSettings(),
        store=ResultsStore(tmp_path),
        node_id="t::x",
        hooks=[Mine(), Stranger()],
    )
    with pytest.raises(
        ConfigError, match=r"(?s)Stranger is not a measure hook.*subclass pytest_vllm_serve\.bench\.point\.MeasureHook"
    ):
        bench.run(RandomWorkload(8, 8, num_prompts=1))
