"""The shipped benchmark suite's test_slo as this repository runs it (the code lives once,
in pytest_vllm_serve/suites/benchmarks/test_slo.py)."""

from pytest_vllm_serve.suites.benchmarks.test_slo import *  # noqa: F403
