"""The shipped benchmark suite's test_offline as this repository runs it (the code lives once,
in pytest_vllm_serve/suites/benchmarks/test_offline.py)."""

from pytest_vllm_serve.suites.benchmarks.test_offline import *  # noqa: F403
