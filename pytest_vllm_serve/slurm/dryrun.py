"""``--vllm-slurm-dry-run``: the batch script and per-node commands of every server
the collected tests need, printed and saved; nothing is submitted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import pytest

from ..command import resolve_model
from ..spec import ServerSpec

if TYPE_CHECKING:
    from ..session import VllmSession


def dry_run(vsession: "VllmSession", items: Iterable[pytest.Item]) -> str:
    specs: dict[str, ServerSpec] = {}
    for item in items:
        if "vllm_server" in getattr(item, "fixturenames", ()):
            spec = vsession.spec_for(item)
            specs.setdefault(spec.key(), spec)
    if not specs:
        return "--vllm-slurm-dry-run: no collected test uses vllm_server, so no job would be submitted."
    settings = vsession.settings
    launcher = vsession.launcher()  # checks no SLURM command in a dry run
    out = [f"--vllm-slurm-dry-run: {len(specs)} server(s); nothing is submitted."]
    for sequence, spec in enumerate(specs.values()):
        prepared = launcher.prepare(spec, resolve_model(spec.model, settings.cache_dir), sequence)
        prepared.script_path.parent.mkdir(parents=True, exist_ok=True)
        prepared.script_path.write_text(prepared.text())
        prepared.script_path.chmod(0o755)
        out.append(f"\n======== server {sequence + 1}: {spec.describe()} ========")
        out.append(prepared.dry_run())
    return "\n".join(out)
