"""Bringing up the offline benchmark's engine: vLLM's ``LLM`` in a subprocess, no API server.

The serving half's part of ``vllm_offline``: which model and TP/PP/DP/EP layout
the test's spec resolves to, the ``vllm serve`` arguments turned into ``LLM(...)``
keyword arguments, and the process(es) that run the engine (one per DP rank,
under ``torch.distributed.run``), with a clear error when they fail. What runs
inside those processes, and what is measured, is the benchmark half's
(``bench/offline/engine.py``); the two meet only through JSON files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vllm_serve.errors import ConfigError, ServerStartError, format_log_tail
from pytest_vllm_serve.serving.command import BUILTIN_DEFAULTS, CPU_DEFAULTS, merge_defaults, resolve_model
from pytest_vllm_serve.serving.hardware import find_vllm, has_cuda, require_vllm, visible_gpus
from pytest_vllm_serve.serving.known_causes import describe_cause
from pytest_vllm_serve.serving.launchers.base import read_tail
from pytest_vllm_serve.serving.ports import free_port
from pytest_vllm_serve.serving.procs import terminate_tree
from pytest_vllm_serve.serving.readiness import CAUSE_SEARCH_LINES, LOG_TAIL_LINES
from pytest_vllm_serve.serving.spec import ServerSpec


@dataclass(frozen=True)
class OfflineEngine:
    """What an offline engine for one spec is started with."""

    model: str  # the model argument of LLM(...)
    tp: int
    pp: int
    dp: int
    ep: bool
    engine_args: dict[str, Any] = field(default_factory=dict)
    description: str = ""  # the spec, for reports
    vllm_version: str | None = None


def offline_engine(spec: ServerSpec, cache_dir: Path | None) -> OfflineEngine:
    """The model, layout and engine arguments ``spec`` resolves to on this machine."""
    install = require_vllm()
    cpu = install.is_cpu_build or not has_cuda()
    layout = spec.resolve(None if cpu else len(visible_gpus()))
    model = resolve_model(spec.model, cache_dir)
    defaults: list[str] = []
    if cpu:
        defaults += CPU_DEFAULTS
    if model.builtin:
        defaults += BUILTIN_DEFAULTS
    args = merge_defaults(defaults, list(spec.args))
    found = find_vllm()
    return OfflineEngine(
        model=model.argument,
        tp=layout.tp,
        pp=layout.pp,
        dp=layout.dp,
        ep=layout.ep,
        engine_args=engine_kwargs(args),
        description=spec.describe(),
        vllm_version=found.version if found else None,
    )


def run_engine(
    module: str,
    config: dict[str, Any],
    dp: int,
    work_dir: Path,
    log_path: Path,
    timeout: float = 1800.0,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run ``python -m MODULE run CONFIG.json WORK_DIR`` (``dp`` ranks under torchrun when
    ``dp > 1``) and return each rank's ``rank{N}.json``; a clear error when it fails."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "offline-config.json"
    config_path.write_text(json.dumps(config))
    engine = ["-m", module, "run", str(config_path), str(work_dir)]
    if dp > 1:
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={dp}",
            f"--master-port={free_port()}",
            *engine,
        ]
    else:
        argv = [sys.executable, *engine]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
        )
    try:
        code = proc.wait(timeout=timeout)
    except BaseException:
        terminate_tree(proc.pid, pgid=proc.pid)
        raise
    tail = read_tail(log_path, LOG_TAIL_LINES)
    if code != 0:
        raise ServerStartError(
            f"the offline benchmark exited with code {code}.\n"
            + describe_cause(read_tail(log_path, CAUSE_SEARCH_LINES))
            + format_log_tail(tail, str(log_path))
        )
    ranks = []
    for rank in range(dp):
        path = work_dir / f"rank{rank}.json"
        if not path.exists():
            raise ServerStartError(
                f"the offline benchmark wrote no result for rank {rank}.\n{format_log_tail(tail, str(log_path))}"
            )
        ranks.append(json.loads(path.read_text()))
    return ranks


# -- vllm serve arguments as LLM(...) keyword arguments ----------------------------------------


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def engine_kwargs(args: list[str]) -> dict[str, Any]:
    """``vllm serve`` flags as ``LLM(...)`` keyword arguments (both are EngineArgs).

    ``--max-model-len 8192`` -> max_model_len=8192, ``--enforce-eager`` -> True,
    ``--no-enforce-eager`` -> False, ``--flag=value`` works too.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(
                f"cannot turn the serve argument {arg!r} into an engine argument for the offline benchmark"
            )
        name, eq, inline = arg[2:].partition("=")
        if eq:
            value: Any = _value(inline)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            i += 1
            value = _value(args[i])
        elif name.startswith("no-"):
            name, value = name[3:], False
        else:
            value = True
        out[name.replace("-", "_")] = value
        i += 1
    return out
