"""Wrapping a server in Nsight Systems (``--vllm-nsys``): the reference run.sbatch's options.

Local and Docker servers get ``nsys_command()`` in front of their serve command; the SLURM
node script adds the same options per node (launchers/slurm/script.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pytest_vllm_serve.errors import ConfigError

#: The reference run.sbatch's nsys options. The output (-o) is added per server.
NSYS_OPTIONS = (
    "-t",
    "cuda,nvtx,osrt,cudnn,cublas",
    "--trace-fork-before-exec=true",
    "--cuda-graph-trace=node",
    "--capture-range=cudaProfilerApi",
    "--capture-range-end=repeat",
    "--cuda-memory-usage=true",
    "--cudabacktrace=true",
)


def nsys_command(output: Path | str, binary: str | None = None) -> list[str]:
    """``nsys profile ... -o OUTPUT`` to put in front of the serve command.

    Without ``binary``, nsys must be on this machine's PATH (checked here, before launch).
    """
    nsys = binary or shutil.which("nsys")
    if nsys is None:
        raise ConfigError(
            "--vllm-nsys needs Nsight Systems, but `nsys` is not on PATH.\n"
            "  fix: install Nsight Systems (e.g. the nsight-systems package of the CUDA toolkit) and put "
            "its bin directory on PATH, or drop --vllm-nsys"
        )
    return [nsys, "profile", *NSYS_OPTIONS, "-o", str(output), "--force-overwrite=true"]
