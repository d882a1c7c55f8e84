"""GPU placement: which GPUs each concurrently running local server gets.

A small JSON ledger under a file lock maps each server to its GPU ids, so
servers started by different pools, xdist workers or even concurrent pytest
sessions sharing a results directory get disjoint ``CUDA_VISIBLE_DEVICES``
slices. An entry whose server process has died is dropped on the next read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.files import atomic_write_text
from pytest_vllm_serve.serving.procs import is_alive


def pick_free(visible: list[str], used: set[str], count: int) -> list[str] | None:
    """The first ``count`` visible GPUs not in ``used`` (None if there are not enough)."""
    free = [gpu for gpu in visible if gpu not in used]
    return free[:count] if len(free) >= count else None


@dataclass
class GpuLedger:
    path: Path

    def _lock(self) -> FileLock:
        return FileLock(str(self.path) + ".lock")

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {token: entry for token, entry in data.items() if is_alive(int(entry.get("pid", 0)))}

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        atomic_write_text(self.path, json.dumps(data, indent=1))

    def reserve(self, token: str, count: int, visible: list[str]) -> list[str]:
        """Take ``count`` free GPUs for ``token``; a clear error if too few are free."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            data = self._load()
            used = {gpu for entry in data.values() for gpu in entry["gpus"]}
            chosen = pick_free(visible, used, count)
            if chosen is None:
                holders = ", ".join(
                    f"{entry.get('what', token)} on {','.join(entry['gpus'])}" for token, entry in data.items()
                )
                raise ConfigError(
                    f"this server needs {count} GPU(s) but only {len(visible) - len(used & set(visible))} of the "
                    f"{len(visible)} visible are free (in use: {holders or 'none'}).\n"
                    "  fix: run fewer servers at once (--vllm-max-servers), use --vllm-per-worker with fewer "
                    "workers, or make more GPUs visible (CUDA_VISIBLE_DEVICES)"
                )
            data[token] = {"gpus": chosen, "pid": os.getpid(), "what": token}
            self._save(data)
            return chosen

    def bind(self, token: str, pid: int, what: str) -> None:
        """Tie a reservation to the server process, so it is freed when that process dies."""
        with self._lock():
            data = self._load()
            if token in data:
                data[token].update(pid=pid, what=what)
                self._save(data)

    def release(self, token: str) -> None:
        with self._lock():
            data = self._load()
            if data.pop(token, None) is not None:
                self._save(data)

    def holdings(self) -> dict[str, list[str]]:
        with self._lock():
            return {token: entry["gpus"] for token, entry in self._load().items()}
