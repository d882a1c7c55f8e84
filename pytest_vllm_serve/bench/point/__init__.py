"""One benchmark point, end to end: the object behind the ``vllm_bench`` fixture.

    prompts (workload) -> load plan -> run_load -> metrics -> results file
    -> pytest-benchmark (extra_info + timing series) -> regression gate

- ``runner``: VllmBench, the point's phases in order;
- ``files``: what a point writes (its record, single or over its repeats; vLLM's result file);
- ``gate``: --vllm-fail-on, noise-aware where a side was repeated;
- ``hooks``: MeasureHook, what runs around the measured phase;
- ``search``: VllmSloSearch, many points in one test: the highest load that meets --vllm-slo.

The point's results are written before anything that can fail afterwards (the all-failed
check, the gate), so a measured point is never lost.
"""

from pytest_vllm_serve.bench.point.hooks import MeasureHook
from pytest_vllm_serve.bench.point.runner import PointResult, VllmBench

__all__ = ["MeasureHook", "PointResult", "VllmBench"]
