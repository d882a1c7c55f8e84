"""``--vllm-slurm-dry-run``: the batch script and per-node commands of every server
the collected tests need, printed and saved; nothing is submitted."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vllm_serve.serving.command import resolve_model
from pytest_vllm_serve.serving.spec import ServerSpec

if TYPE_CHECKING:
    from pytest_vllm_serve.serving.launchers.slurm.launcher import SlurmLauncher


def dry_run(specs: Iterable[ServerSpec], launcher: SlurmLauncher, cache_dir: Path | None) -> str:
    """Write each distinct spec's batch script and return what to print."""
    unique: dict[str, ServerSpec] = {}
    for spec in specs:
        unique.setdefault(spec.key(), spec)
    if not unique:
        return "--vllm-slurm-dry-run: no collected test uses vllm_server, so no job would be submitted."
    out = [f"--vllm-slurm-dry-run: {len(unique)} server(s); nothing is submitted."]
    for sequence, spec in enumerate(unique.values()):
        prepared = launcher.prepare(spec, resolve_model(spec.model, cache_dir), sequence)
        prepared.script_path.parent.mkdir(parents=True, exist_ok=True)
        prepared.script_path.write_text(prepared.text())
        prepared.script_path.chmod(0o755)
        out.append(f"\n======== server {sequence + 1}: {spec.describe()} ========")
        out.append(prepared.dry_run())
    return "\n".join(out)
