"""The generated batch script and per-node commands, for rpc, ray and mp at 2 and 4 nodes.

Pure checks over the commands, ``bash -n`` over every script, and runs of the
per-node script itself under bash, once per node rank, with stand-ins for the
programs this machine lacks (nsys, ray, docker, a GPU vLLM): they record their
arguments, so the tests see what each node would really run. No cluster needed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vllm_serve.serving.command import ModelRef, ServeCommand
from pytest_vllm_serve.serving.launchers.slurm.script import (
    Container,
    Expanded,
    JobScript,
    node_commands,
    node_script,
    render_script,
    shell_join,
)
from pytest_vllm_serve.serving.launchers.slurm.topology import Allocation, plan
from pytest_vllm_serve.serving.spec import ServerSpec

HEAD = "${HEAD_IP}"


def make_job(spec: ServerSpec, nodes: int, gpus: int | None = 8, backend: str | None = None, **kwargs) -> JobScript:
    topo = plan(spec, Allocation(nodes, gpus), backend)
    serve = ServeCommand.build(
        spec, topo.layout(), ModelRef("org/model", "org/model"), host="0.0.0.0", port=0, cpu=gpus is None
    )
    fields = dict(
        topology=topo,
        entry=("vllm", "serve", "org/model"),
        serve_args=tuple(serve.args),
        job_name="pvs-test",
        job_dir="/shared/logs/pvs-test",
    )
    fields.update(kwargs)
    return JobScript(**fields)


def flag(words, name):
    """The value after ``name`` (None if absent)."""
    words = list(words)
    return words[words.index(name) + 1] if name in words else None


# -- rpc -------------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", [2, 4])
def test_rpc_every_node_runs_vllm_serve_with_dp_flags(nodes):
    job = make_job(ServerSpec(tp=4), nodes)  # 8 GPUs per node: DP = nodes * 2, 2 per node
    commands = node_commands(job)
    assert [c.node for c in commands] == list(range(nodes))
    assert [c.role for c in commands] == ["head"] + ["worker"] * (nodes - 1)
    for cmd in commands:
        words = cmd.serve
        assert words[:3] == ("vllm", "serve", "org/model")
        assert flag(words, "--tensor-parallel-size") == "4"
        assert flag(words, "--data-parallel-size") == str(nodes * 2)
        assert flag(words, "--data-parallel-size-local") == "2"
        assert flag(words, "--data-parallel-address") == HEAD
        assert flag(words, "--data-parallel-rpc-port") == "${RPC_PORT}"
        assert cmd.ray is None
    head = commands[0].serve
    assert (flag(head, "--host"), flag(head, "--port")) == ("0.0.0.0", "${API_PORT}")
    assert "--headless" not in head and "--data-parallel-start-rank" not in head
    for cmd in commands[1:]:
        assert flag(cmd.serve, "--data-parallel-start-rank") == str(cmd.node * 2)
        assert cmd.serve[-1] == "--headless"
        assert "--host" not in cmd.serve and "--port" not in cmd.serve


def test_rpc_with_expert_parallelism():
    commands = node_commands(make_job(ServerSpec(tp=8, ep=True), 2))
    for cmd in commands:
        assert "--enable-expert-parallel" in cmd.serve
        assert flag(cmd.serve, "--data-parallel-size") == "2"
        assert flag(cmd.serve, "--data-parallel-size-local") == "1"
    assert flag(commands[1].serve, "--data-parallel-start-rank") == "1"


def test_a_single_replica_on_one_node_gets_no_dp_flags():
    (head,) = node_commands(make_job(ServerSpec(), 1, gpus=None))
    assert not any(w.startswith("--data-parallel") for w in head.serve)
    assert flag(head.serve, "--port") == "${API_PORT}"


# -- ray -------------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", [2, 4])
def test_ray_head_starts_the_cluster_and_serves_workers_only_join(nodes):
    job = make_job(ServerSpec(tp=8), nodes, backend="ray")
    head, *workers = node_commands(job)
    assert head.ray == (
        "ray",
        "start",
        "--head",
        "--port=${RAY_PORT}",
        "--num-gpus=8",
        "--disable-usage-stats",
        "--block",
    )
    assert flag(head.serve, "--data-parallel-backend") == "ray"
    assert flag(head.serve, "--data-parallel-address") == HEAD
    assert flag(head.serve, "--data-parallel-size") == str(nodes)
    assert flag(head.serve, "--port") == "${API_PORT}"
    assert len(workers) == nodes - 1
    for worker in workers:
        assert worker.serve is None
        assert worker.ray == (
            "ray",
            "start",
            "--address=${HEAD_IP}:${RAY_PORT}",
            "--num-gpus=8",
            "--disable-usage-stats",
            "--block",
        )
    script = node_script(job)
    # The head waits until the cluster has every GPU of the job before it serves.
    assert f"waiting for the ray cluster to reach {nodes * 8} GPU(s)" in script
    assert "for _ in $(seq 1 120)" in script and "sleep 5" in script


# -- mp --------------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", [2, 4])
def test_mp_nodes_share_one_tp_x_pp_world(nodes):
    job = make_job(ServerSpec(tp=8, pp=nodes), nodes)
    commands = node_commands(job)
    assert job.topology.backend == "mp"
    for cmd in commands:
        words = cmd.serve
        assert flag(words, "--pipeline-parallel-size") == str(nodes)
        assert flag(words, "--distributed-executor-backend") == "mp"
        assert flag(words, "--nnodes") == str(nodes)
        assert flag(words, "--node-rank") == str(cmd.node)
        assert flag(words, "--master-addr") == HEAD
        assert flag(words, "--master-port") == "${MASTER_PORT}"
        assert not any(w.startswith("--data-parallel") for w in words)
        assert ("--headless" in words) == (cmd.node > 0)
        assert ("--port" in words) == (cmd.node == 0)


# -- rendering ---------------------------------------------------------------------------------


def test_expanded_words_are_double_quoted_and_literals_single_quoted():
    assert shell_join(("--x", Expanded("${HEAD_IP}"), "a b", "$HOME")) == "--x \"${HEAD_IP}\" 'a b' '$HOME'"
    with pytest.raises(ValueError):
        Expanded("$(reboot)")
    with pytest.raises(ValueError):
        Expanded("plain")


VARIANTS = {
    "rpc-2": dict(spec=ServerSpec(tp=4), nodes=2),
    "rpc-4-ep": dict(spec=ServerSpec(tp=8, ep=True), nodes=4),
    "ray-2": dict(spec=ServerSpec(tp=8), nodes=2, backend="ray"),
    "ray-4-cpu": dict(spec=ServerSpec(), nodes=4, gpus=None, backend="ray"),
    "mp-2": dict(spec=ServerSpec(tp=8, pp=2), nodes=2),
    "mp-4-nsys": dict(spec=ServerSpec(tp=8, pp=4), nodes=4, nsys_dir="/shared/profiles/nsys/pvs-test"),
    "rpc-2-docker": dict(
        spec=ServerSpec(tp=4),
        nodes=2,
        nsys_dir="/shared/profiles/nsys/pvs-test",
        container=Container(
            image="vllm-serve:latest",
            tarball="/shared/img.tar.gz",
            volumes=("/shared:/shared",),
            env_names=("VLLM_API_KEY",),
        ),
    ),
    "ray-2-docker": dict(
        spec=ServerSpec(tp=8),
        nodes=2,
        backend="ray",
        container=Container(image="registry.example/vllm:1", volumes=("/shared:/shared",)),
    ),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_script_is_valid_bash(name, tmp_path):
    job = make_job(**VARIANTS[name])
    script = tmp_path / "serve.sbatch"
    script.write_text(render_script(job))
    node = tmp_path / "node.sh"
    node.write_text(node_script(job))
    for path in (script, node):
        done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    text = script.read_text()
    assert "#SBATCH --nodes=%d" % job.topology.nodes in text
    assert "#SBATCH --ntasks-per-node=1" in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in text
    # The node script is a quoted here-document: nothing in it is expanded by the batch shell.
    assert "NODE_SCRIPT=$(cat <<'NODE_SCRIPT_END'" in text
    assert "srun --nodes=$NNODES --ntasks-per-node=1 --kill-on-bad-exit=1" in text
    assert '--output="$JOB_DIR/node%n.log"' in text
    # One case branch per node, each with the command of the generated plan.
    for cmd in node_commands(job):
        assert f"  {cmd.node})  # " in text


def test_the_batch_script_derives_every_port_from_the_job_id():
    text = render_script(make_job(ServerSpec(tp=4), 2))
    assert "OFFSET=$(((SLURM_JOB_ID + PORT_SEQUENCE) % 1000))" in text
    for line in (
        "API_PORT=$((8000 + OFFSET))",
        "RPC_PORT=$((13345 + OFFSET))",
        "RAY_PORT=$((6379 + OFFSET))",
        "MASTER_PORT=$((29500 + OFFSET))",
    ):
        assert line in text


def test_containers_only_ever_touch_their_own_container():
    job = make_job(**VARIANTS["rpc-2-docker"])
    text = node_script(job)
    assert 'CONTAINER="pvs-${SLURM_JOB_ID}-node${NODE}"' in text
    assert 'docker rm -f "$CONTAINER"' in text
    assert "docker ps" not in text and "rmi" not in text and "xargs" not in text
    assert 'docker image inspect "$IMAGE"' in text and "docker load" in text
    assert "--gpus all" in text
    cpu = make_job(**{**VARIANTS["rpc-2-docker"], "container": Container(image="img:1", gpus=False)})
    assert "--gpus" not in node_script(cpu)


# -- the per-node script, run under bash ---------------------------------------------------------

FAKE_SERVER = r"""
import json, os, sys, time
out = os.path.join(os.environ["JOB_DIR"], "argv-node" + os.environ["NODE"] + ".json")
with open(out, "w") as f:
    json.dump(sys.argv[1:], f)
if os.environ.get("FAKE_SERVER_SLEEP"):
    open(out + ".started", "w").close()
    time.sleep(600)
"""

FAKE_NSYS = """#!/bin/bash
# nsys stand-in: records its output name, then runs the profiled command.
while [ "$1" != "-o" ]; do shift; done
echo "$2" > "$JOB_DIR/nsys-node$NODE"
shift 2
exec "$@"
"""

FAKE_RAY = """#!/bin/bash
# ray stand-in: records its arguments; a head blocks like `ray start --head --block`.
echo "$*" >> "$JOB_DIR/ray-node$NODE"
case "$*" in *--head*--block*) exec sleep 600 ;; esac
"""

FAKE_PYTHON = """#!/bin/bash
# The ray cluster check: report every GPU present.
echo 32
"""

FAKE_SCONTROL = """#!/bin/bash
# scontrol stand-in: knows no node, as when no slurmctld answers (the real one waits ~10 s for it).
exit 1
"""

FAKE_DOCKER = """#!/bin/bash
# docker stand-in: records every call; the image is missing until loaded; exec runs the command.
echo "$*" >> "$JOB_DIR/docker.log"
case "$1" in
  image) [ -e "$JOB_DIR/loaded" ] ;;
  load) cat > /dev/null; touch "$JOB_DIR/loaded" ;;
  run) echo cid ;;
  exec) shift; while [ "$1" = "-e" ]; do shift 2; done; shift; exec "$@" ;;
esac
"""


@pytest.fixture
def stand_ins(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "nsys": FAKE_NSYS,
        "ray": FAKE_RAY,
        "docker": FAKE_DOCKER,
        "scontrol": FAKE_SCONTROL,
        "fake-python": FAKE_PYTHON,
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    server = tmp_path / "fake_server.py"
    server.write_text(FAKE_SERVER)
    return bin_dir, server


def run_node(job: JobScript, node: int, bin_dir: Path, extra_env: dict[str, str] | None = None, wait: bool = True):
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_NODEID": str(node),
        "SLURM_JOB_ID": "123",
        "HEAD_NODE": "node01",
        "HEAD_IP": "10.1.2.3",
        "API_PORT": "8123",
        "RPC_PORT": "13468",
        "RAY_PORT": "6502",
        "MASTER_PORT": "29623",
        "JOB_DIR": job.job_dir,
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        ["bash", "-c", node_script(job)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    if wait:
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, out
    return proc


def fake_job(tmp_path, server: Path, **variant) -> JobScript:
    job = make_job(**variant)
    fields = {f: getattr(job, f) for f in job.__dataclass_fields__}
    fields.update(
        entry=(sys.executable, str(server), "org/model"), job_dir=str(tmp_path), ray="ray", python="fake-python"
    )
    return JobScript(**fields)


@pytest.mark.parametrize("nodes", [2, 4])
def test_each_node_runs_its_own_command_and_names_its_nsys_report(tmp_path, stand_ins, nodes):
    bin_dir, server = stand_ins
    job = fake_job(tmp_path, server, spec=ServerSpec(tp=4), nodes=nodes, nsys_dir=str(tmp_path / "profiles"))
    for node in range(nodes):
        code, out = run_node(job, node, bin_dir)
        # The server exited by itself: a failure, so the step (and the job) end.
        assert code == 1, out
        assert "the server process exited with status 0" in out
        argv = json.loads((tmp_path / f"argv-node{node}.json").read_text())
        assert flag(argv, "--data-parallel-address") == "10.1.2.3"
        assert flag(argv, "--data-parallel-rpc-port") == "13468"
        if node == 0:
            assert flag(argv, "--port") == "8123" and "--headless" not in argv
        else:
            assert flag(argv, "--data-parallel-start-rank") == str(node * 2) and argv[-1] == "--headless"
        # N is resolved on the node itself: every node writes its own report.
        assert (tmp_path / f"nsys-node{node}").read_text().strip() == f"{tmp_path}/profiles/profile-node{node}.nsys-rep"
    assert (tmp_path / "profiles").is_dir()


def test_mp_nodes_get_their_rank(tmp_path, stand_ins):
    bin_dir, server = stand_ins
    job = fake_job(tmp_path, server, spec=ServerSpec(tp=8, pp=4), nodes=4)
    for node in range(4):
        code, out = run_node(job, node, bin_dir)
        assert code == 1, out
        argv = json.loads((tmp_path / f"argv-node{node}.json").read_text())
        assert flag(argv, "--node-rank") == str(node)
        assert flag(argv, "--master-addr") == "10.1.2.3" and flag(argv, "--master-port") == "29623"


def test_ray_head_waits_for_the_cluster_then_serves(tmp_path, stand_ins):
    bin_dir, server = stand_ins
    job = fake_job(tmp_path, server, spec=ServerSpec(tp=8), nodes=4, backend="ray")
    code, out = run_node(job, 0, bin_dir)
    assert code == 1, out
    assert "waiting for the ray cluster to reach 32 GPU(s)" in out
    ray_calls = (tmp_path / "ray-node0").read_text().splitlines()
    assert ray_calls == ["start --head --port=6502 --num-gpus=8 --disable-usage-stats --block", "stop --force"]
    argv = json.loads((tmp_path / "argv-node0.json").read_text())
    assert flag(argv, "--data-parallel-backend") == "ray"
    code, out = run_node(job, 3, bin_dir)
    assert (tmp_path / "ray-node3").read_text().splitlines() == [
        "start --address=10.1.2.3:6502 --num-gpus=8 --disable-usage-stats --block",
        "stop --force",
    ]
    assert not (tmp_path / "argv-node3.json").exists()


def test_a_node_beyond_the_plan_fails_clearly(tmp_path, stand_ins):
    bin_dir, server = stand_ins
    code, out = run_node(fake_job(tmp_path, server, spec=ServerSpec(tp=4), nodes=2), 5, bin_dir)
    assert code == 1
    assert "no command for node 5" in out


def test_sigterm_stops_the_server_and_its_process_group(tmp_path, stand_ins):
    bin_dir, server = stand_ins
    job = fake_job(tmp_path, server, spec=ServerSpec(tp=4), nodes=2)
    proc = run_node(job, 1, bin_dir, {"FAKE_SERVER_SLEEP": "1"}, wait=False)
    started = tmp_path / "argv-node1.json.started"
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    pid = next(
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and _cmdline(p).endswith("--headless") and str(server) in _cmdline(p)
    )
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, out
    assert "stopping" in out
    assert not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z"
    assert time.monotonic() - start < 5


def _cmdline(pid) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _state(pid) -> str:
    try:
        return re.search(r"State:\s+(\w)", Path(f"/proc/{pid}/status").read_text()).group(1)
    except (OSError, AttributeError):
        return "gone"


def test_in_a_container_each_node_loads_the_image_once_and_removes_only_its_container(tmp_path, stand_ins):
    bin_dir, server = stand_ins
    container = Container(
        image="vllm-serve:latest",
        tarball=str(tmp_path / "img.tar"),
        volumes=(f"{tmp_path}:{tmp_path}",),
        env_names=("VLLM_API_KEY",),
    )
    (tmp_path / "img.tar").write_text("not really an image")
    job = fake_job(tmp_path, server, spec=ServerSpec(tp=4), nodes=2, container=container)
    for node in (0, 1):
        code, out = run_node(job, node, bin_dir)
        assert code == 1, out
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert calls.count("image inspect vllm-serve:latest") == 2
    assert calls.count("load -i " + str(tmp_path / "img.tar")) == 1  # the second node found it loaded
    runs = [c for c in calls if c.startswith("run ")]
    assert [r.split()[3] for r in runs] == ["pvs-123-node0", "pvs-123-node1"]
    assert all(
        "--net=host" in r and "--gpus all" in r and "-e VLLM_API_KEY" in r and "--label pytest-vllm-serve.job=123" in r
        for r in runs
    )
    removed = sorted({c.split()[-1] for c in calls if c.startswith(("rm ", "stop "))})
    assert removed == ["pvs-123-node0", "pvs-123-node1"]
    assert not any(c.startswith(("ps", "rmi", "kill", "container prune")) for c in calls)
    argv = json.loads((tmp_path / "argv-node1.json").read_text())
    assert flag(argv, "--data-parallel-start-rank") == "2"
