"""The shipped benchmark suite's test_sweeps as this repository runs it (the code lives once,
in pytest_vllm_serve/suites/benchmarks/test_sweeps.py)."""

from pytest_vllm_serve.suites.benchmarks.test_sweeps import *  # noqa: F403
