"""The shipped suites: the smoke suite and the serving benchmarks.

They are ordinary pytest test modules inside the package, so an installed
plugin can run them from any directory::

    pytest --pyargs pytest_vllm_serve.suites -m smoke --vllm-url http://gpu-box:8000
    pytest --vllm-suite smoke,benchmarks --vllm-model=/models/llama

This repository's ``tests/smoke`` and ``tests/benchmarks`` collect these same
functions (they import them); the code lives here once. ``--vllm-suite`` finds
these folders through ``config.suite_paths``.
"""
