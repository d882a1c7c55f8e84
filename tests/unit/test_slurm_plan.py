"""SLURM planning, pure: topology rules, ports, --vllm-slurm-opt, and parsing the
scheduler's output. No cluster needed; each test runs in milliseconds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.launchers.slurm import cli
from pytest_vllm_serve.serving.launchers.slurm.options import gpus_per_node_from, parse_gres_gpus, parse_requested
from pytest_vllm_serve.serving.launchers.slurm.topology import Allocation, job_ports, plan
from pytest_vllm_serve.serving.spec import RuleError, ServerSpec

# -- topology: the reference's rules ---------------------------------------------------------


@pytest.mark.parametrize(
    "nodes, gpn, spec, dp, dp_local, backend",
    [
        # EP: DP = total / TP
        (2, 8, ServerSpec(tp=8, ep=True), 2, 1, "rpc"),
        (4, 8, ServerSpec(tp=4, ep=True), 8, 2, "rpc"),
        # otherwise DP = total / (TP x PP)
        (2, 8, ServerSpec(tp=4), 4, 2, "rpc"),
        (4, 8, ServerSpec(tp=1), 32, 8, "rpc"),
        (1, 8, ServerSpec(tp=8), 1, 1, "rpc"),
        # PP > 1 selects mp, and TP x PP uses every GPU (no DP)
        (2, 8, ServerSpec(tp=8, pp=2), 1, 1, "mp"),
        (4, 8, ServerSpec(tp=8, pp=4), 1, 1, "mp"),
        # GPUs per node come from the allocation, not a hard-coded 8
        (2, 4, ServerSpec(tp=4), 2, 1, "rpc"),
        (3, 2, ServerSpec(tp=1, ep=True), 6, 2, "rpc"),
    ],
)
def test_dp_and_dp_per_node_follow_the_allocation(nodes, gpn, spec, dp, dp_local, backend):
    topo = plan(spec, Allocation(nodes, gpn))
    assert (topo.dp, topo.dp_local, topo.backend) == (dp, dp_local, backend)
    assert topo.tp * topo.pp * topo.dp == nodes * gpn
    layout = topo.layout()
    assert (layout.tp, layout.pp, layout.dp, layout.ep) == (spec.tp, spec.pp, dp, spec.ep)


def test_tp_larger_than_a_node_is_an_error_not_dp_per_node_zero():
    with pytest.raises(RuleError) as info:
        plan(ServerSpec(tp=16), Allocation(2, 8))
    text = str(info.value)
    assert "TP must fit in one node" in text
    assert "DP per node would be 8 / 16 = 0" in text
    assert "fix: use tp <= 8" in text


def test_tp_must_divide_a_node():
    with pytest.raises(RuleError, match="TP must divide the GPUs of one node"):
        plan(ServerSpec(tp=3), Allocation(2, 8))


def test_pp_selects_mp_and_refuses_the_other_backends():
    assert plan(ServerSpec(tp=8, pp=2), Allocation(2, 8)).backend == "mp"
    assert plan(ServerSpec(tp=8, pp=2), Allocation(2, 8), "mp").backend == "mp"
    for backend in ("rpc", "ray"):
        with pytest.raises(RuleError, match="PP > 1 selects the mp backend"):
            plan(ServerSpec(tp=8, pp=2), Allocation(2, 8), backend)


def test_pp_and_ep_cannot_be_combined():
    with pytest.raises(RuleError, match="PP and EP cannot be combined"):
        ServerSpec(tp=8, pp=2, ep=True)


def test_mp_has_no_dp_so_tp_x_pp_must_use_the_whole_allocation():
    with pytest.raises(RuleError) as info:
        plan(ServerSpec(tp=4, pp=2), Allocation(2, 8))
    assert "the mp backend has no DP" in str(info.value)
    assert "ask for 1 node(s)" in str(info.value)


def test_a_layout_the_allocation_cannot_hold():
    with pytest.raises(RuleError) as info:
        plan(ServerSpec(tp=8, pp=4), Allocation(1, 8))
    assert "the allocation must hold one TP x PP replica" in str(info.value)
    assert "ask for 4 node(s)" in str(info.value)
    with pytest.raises(RuleError, match="must equal the allocation's GPUs"):
        plan(ServerSpec(tp=8, pp=2), Allocation(3, 8))


def test_dp_comes_from_the_allocation():
    assert plan(ServerSpec(tp=4, dp="auto"), Allocation(2, 8)).dp == 4
    assert plan(ServerSpec(tp=4, dp=4), Allocation(2, 8)).dp == 4
    with pytest.raises(RuleError, match="on SLURM, DP comes from the allocation"):
        plan(ServerSpec(tp=4, dp=2), Allocation(2, 8))


def test_unknown_backend():
    with pytest.raises(ConfigError) as info:
        plan(ServerSpec(), Allocation(1, 8), "mpi")
    assert "unknown SLURM backend 'mpi'" in str(info.value)
    assert "fix: use one of rpc, ray, mp" in str(info.value)


def test_cpu_nodes_hold_one_tp_group_each():
    one = plan(ServerSpec(), Allocation(1, None))
    assert (one.dp, one.dp_local, one.total_gpus) == (1, 1, None)
    two = plan(ServerSpec(), Allocation(2, None))
    assert (two.dp, two.dp_local) == (2, 1)
    with pytest.raises(RuleError, match="ask for 2 node"):
        plan(ServerSpec(pp=2), Allocation(1, None))


@given(
    nodes=st.integers(1, 8),
    gpn=st.sampled_from([1, 2, 4, 8]),
    tp=st.sampled_from([1, 2, 4, 8, 16]),
    pp=st.sampled_from([1, 2, 4]),
    ep=st.booleans(),
)
def test_every_plan_uses_exactly_the_allocation(nodes, gpn, tp, pp, ep):
    try:
        spec = ServerSpec(tp=tp, pp=pp, ep=ep)
        topo = plan(spec, Allocation(nodes, gpn))
    except RuleError:
        return
    assert topo.tp <= gpn and gpn % topo.tp == 0
    assert topo.tp * topo.pp * topo.dp == nodes * gpn
    if topo.backend == "mp":
        assert topo.dp == 1
    else:
        assert topo.dp_local * nodes == topo.dp and topo.dp_local >= 1
        assert [topo.start_rank(n) for n in range(nodes)] == list(range(0, topo.dp, topo.dp_local))


# -- ports ---------------------------------------------------------------------------------


def test_ports_derive_from_the_job_id():
    assert job_ports(12345) == {"API_PORT": 8345, "RPC_PORT": 13690, "RAY_PORT": 6724, "MASTER_PORT": 29845}
    assert job_ports(1) != job_ports(2)
    assert job_ports(7, sequence=1) == job_ports(8)
    ports = job_ports(999)
    assert len(set(ports.values())) == 4


# -- --vllm-slurm-opt --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "words, nodes, gpn, partition",
    [
        (["-N", "2"], 2, None, None),
        (["-N4", "--gpus-per-node=8"], 4, 8, None),
        (["--nodes=2", "--gpus-per-node", "h100:4"], 2, 4, None),
        (["--nodes", "3-3", "--gres=gpu:a100:2,shard:1"], 3, 2, None),
        (["-p", "gpu", "--time=01:00:00"], None, None, "gpu"),
        (["--partition=debug", "--gres=gpu"], None, 1, "debug"),
    ],
)
def test_requested_resources_are_read_from_sbatch_options(words, nodes, gpn, partition):
    requested = parse_requested(tuple(words))
    assert (requested.nodes, requested.gpus_per_node, requested.partition) == (nodes, gpn, partition)


def test_total_gpus_spread_over_nodes():
    assert gpus_per_node_from(parse_requested(("--nodes=2", "--gpus=16")), 2) == 8
    with pytest.raises(ConfigError, match="does not spread evenly"):
        gpus_per_node_from(parse_requested(("--nodes=3", "--gpus=16")), 3)


@pytest.mark.parametrize(
    "words", [["--output=x.log"], ["-o", "x"], ["--error=e"], ["--wrap=hostname"], ["--ntasks-per-node=8"]]
)
def test_options_the_plugin_sets_itself_are_refused(words):
    with pytest.raises(ConfigError) as info:
        parse_requested(tuple(words))
    assert "is set by the plugin" in str(info.value) and "fix: remove" in str(info.value)


def test_a_node_range_is_refused():
    with pytest.raises(ConfigError, match="fixed node count"):
        parse_requested(("--nodes=2-4",))


@pytest.mark.parametrize(
    "gres, gpus",
    [("gpu:8(S:0-1)", 8), ("gpu:h100:4", 4), ("(null)", None), ("gpu:a100:2,gpu:v100:2", 4), ("shard:4", None)],
)
def test_gres_of_a_node(gres, gpus):
    assert parse_gres_gpus(gres) == gpus


# -- the scheduler's output -------------------------------------------------------------------


def test_job_id_from_sbatch_parsable():
    assert cli.parse_job_id("42\n") == 42
    assert cli.parse_job_id("42;cluster1") == 42
    with pytest.raises(cli.SlurmError):
        cli.parse_job_id("sbatch: error: something")


def test_scontrol_job_line_is_parsed():
    line = (
        "JobId=7 JobName=pvs-x UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) "
        "ExitCode=2:0 NodeList=node[01-02] AllocNode:Sid=localhost:11 Command=/tmp/a b/serve.sbatch WorkDir=/tmp"
    )
    status = cli.parse_scontrol_job(7, line)
    assert (status.state, status.reason, status.exit_code, status.nodes) == (
        "FAILED",
        "NonZeroExitCode",
        "2:0",
        "node[01-02]",
    )
    assert cli.parse_key_values(line)["Command"] == "/tmp/a b/serve.sbatch"
    assert status.describe() == "SLURM job 7 is FAILED (reason NonZeroExitCode, exit code 2:0, nodes node[01-02])"
    assert not status.active and not status.serving


def test_squeue_line_is_parsed():
    assert cli.parse_squeue(3, "") is None
    pending = cli.parse_squeue(3, "PENDING|BeginTime|\n")
    assert pending.pending and pending.active and pending.reason == "BeginTime"
    running = cli.parse_squeue(3, "RUNNING|None|vm\n")
    assert running.serving and running.nodes == "vm"
    assert cli.JobStatus(3, None).describe() == "SLURM job 3 has left the queue"


@pytest.mark.parametrize(
    "env, gpus",
    [
        ({"SLURM_GPUS_ON_NODE": "8"}, 8),
        ({"SLURM_GPUS_PER_NODE": "h100:4"}, 4),
        ({"SLURM_JOB_GPUS": "0,1,2"}, 3),
    ],
)
def test_gpus_per_node_inside_an_allocation(env, gpus):
    assert cli.allocation_gpus_per_node(env) == gpus


def test_missing_commands_are_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        cli.require_commands(cli.SUBMIT_COMMANDS)
    text = str(info.value)
    assert "sbatch, squeue, scontrol, scancel are not on PATH" in text
    assert "fix: run pytest on a login node" in text
