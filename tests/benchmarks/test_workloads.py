"""The shipped benchmark suite's test_workloads as this repository runs it (the code lives once,
in pytest_vllm_serve/suites/benchmarks/test_workloads.py)."""

from pytest_vllm_serve.suites.benchmarks.test_workloads import *  # noqa: F403
