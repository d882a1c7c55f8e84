"""A SLURM job ready to submit: its plan, batch script and submission command, and
the secret serve-arg values it takes through its environment, never in its script.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pytest_vllm_serve.redact import is_secret_flag, secret_positions
from pytest_vllm_serve.serving.launchers.slurm.script import Expanded, JobScript, render_dry_run, render_script
from pytest_vllm_serve.serving.launchers.slurm.topology import Topology
from pytest_vllm_serve.serving.spec import ServerSpec


@dataclass(frozen=True)
class ContainerRequest:
    """``--vllm-docker IMAGE`` with ``--vllm-slurm``: the image, and which vLLM it holds."""

    image: str
    flavor: str = "auto"  # cpu, gpu, or auto: cpu on CPU nodes, gpu on GPU nodes


@dataclass(frozen=True)
class PreparedJob:
    """A job ready to submit: its plan, script and submission command."""

    spec: ServerSpec
    topology: Topology
    script: JobScript
    script_path: Path
    served_name: str
    sbatch: list[str]
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)  # secret serve-arg values, by variable

    def text(self) -> str:
        return render_script(self.script, shlex.join(self.sbatch))

    def dry_run(self) -> str:
        return render_dry_run(self.script, str(self.script_path), self.sbatch)


def secrets_through_env(args: list[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Serve args with each secret value (``--hf-token X``) replaced by a reference to a variable
    of the job's environment, and those variables: the batch script never holds the secret."""
    out, env = list(args), {}
    for n, i in enumerate(secret_positions(out), start=1):
        name = f"PVS_SECRET_ARG_{n}"
        flag, eq, value = out[i].partition("=") if is_secret_flag(out[i]) else ("", "", out[i])
        env[name] = value
        out[i] = Expanded(f"{flag}{eq}${{{name}}}")
    return tuple(out), env
