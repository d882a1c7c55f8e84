"""The shipped benchmark suite's test_types as this repository runs it (the code lives once,
in pytest_vllm_serve/suites/benchmarks/test_types.py)."""

from pytest_vllm_serve.suites.benchmarks.test_types import *  # noqa: F403
