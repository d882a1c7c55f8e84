"""What every launcher provides: the Launcher protocol, and reading a server's log."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Protocol

from pytest_vllm_serve.serving.command import ModelRef
from pytest_vllm_serve.serving.readiness import LOG_TAIL_LINES
from pytest_vllm_serve.serving.running import ServerProcess
from pytest_vllm_serve.serving.spec import Layout, ServerSpec

#: uvicorn's access log ("INFO:     127.0.0.1:35302 - "POST /tokenize HTTP/1.1" 200 OK"): one line per
#: request, so under load it buries the lines that say why a server died.
_ACCESS_LOG = re.compile(
    r'^\s*(\(APIServer[^)]*\)\s*)?INFO:?\s.*\d+\.\d+\.\d+\.\d+:\d+ - "[A-Z]+ [^"]*HTTP/[\d.]+" \d{3}'
)


def read_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a log, HTTP access-log lines left out."""
    if path is None or not path.exists():
        return []
    with open(path, encoding="utf-8", errors="replace") as handle:
        return list(deque((line for line in handle if not _ACCESS_LOG.match(line)), maxlen=lines))


class Launcher(Protocol):
    """Where servers run. Launchers subclass it: ``resolve_layout`` has a default."""

    name: str

    def visible_gpus(self) -> int | None:
        """GPUs this launcher can place servers on; None when it does not use GPUs."""

    def gpus_per_node(self) -> int | None: ...

    def launch(self, spec: ServerSpec, layout: Layout, model: ModelRef) -> ServerProcess: ...

    def resolve_layout(self, spec: ServerSpec) -> Layout:
        """The spec's layout on this launcher's GPUs; a RuleError, before anything launches, if
        it cannot fit. A launcher that places servers on more than one machine (SLURM) resolves
        it itself."""
        return spec.resolve(self.visible_gpus(), self.gpus_per_node())
