"""The Docker launcher against a real engine and the project's own CPU image.

Needs a running Docker engine (scripts/services/docker.sh starts one); without it
these tests fail and say how to start one. The CPU image is built once (about
three minutes on a fresh machine) and reused while its recipe is unchanged.
vLLM starts in a container only twice: once for the smoke suite, and once in
the SIGKILL test, which kills pytest long before the server is ready. (No engine at all:
tests/unit/test_docker_units.py.)
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.launchers.docker import containers
from pytest_vllm_serve.serving.launchers.docker.cpu_image import build
from pytest_vllm_serve.serving.launchers.docker.images import ensure_image, tarball_tag
from tests.support import ROOT
from tests.support.inner_runs import USES_SERVER, popen_pytest, run_timed, wait_until


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = containers.connect()
    except ConfigError as exc:
        pytest.fail(f"the Docker tests need a running Docker engine: {exc}", pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def cpu_image(docker_client) -> str:
    """The project's vllm-cpu image, built unless the same recipe was built before."""
    result = build(log=lambda line: print(line, flush=True))
    return result.tag


class ContainerWatcher:
    """Records every labelled container of one inner run (matched by its session label)."""

    def __init__(self, client, session_prefix: str, interval: float = 0.3):
        self.client = client
        self.prefix = session_prefix
        self.interval = interval
        self.seen: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> list:
        found = self.client.containers.list(all=True, filters={"label": containers.LABEL_SESSION})
        return [c for c in found if c.labels.get(containers.LABEL_SESSION, "").startswith(self.prefix)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for container in self.current():
                    self.seen.setdefault(container.id, container.attrs)
            except Exception:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> ContainerWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def start_labelled(client, image: str, owner: containers.Owner, session: str):
    """A cheap container (it only sleeps) carrying the launcher's labels."""
    return client.containers.run(
        image,
        entrypoint=["sleep", "600"],
        detach=True,
        network_mode="none",
        labels=containers.run_labels(owner, session, "test"),
    )


def test_smoke_suite_passes_in_a_container(pytester, inner_args, docker_client, cpu_image, tmp_path):
    stale = start_labelled(
        docker_client, cpu_image, containers.Owner(socket.gethostname(), dead_pid(), "1.00"), "crashed-run"
    )
    secret = "sk-docker-" + "q7w8e9" * 3
    with ContainerWatcher(docker_client, str(tmp_path)) as watcher:
        result = pytester.runpytest_subprocess(
            str(ROOT / "tests" / "smoke"),
            *inner_args,
            f"--vllm-docker={cpu_image}",
            f"--vllm-api-key={secret}",
            "-q",
            timeout=400,
        )
        running_after = watcher.current()
    text = result.stdout.str()
    assert result.ret == 0, text[-6000:] + result.stderr.str()[-2000:]
    assert "13 passed" in text
    assert "server launches this session: 1" in text

    # Exactly one container ran, with the host network and IPC, labelled with its run...
    assert len(watcher.seen) == 1, list(watcher.seen)
    attrs = next(iter(watcher.seen.values()))
    labels = attrs["Config"]["Labels"]
    assert labels[containers.LABEL_OWNER_PID].isdigit()
    assert labels[containers.LABEL_OWNER_HOST] == socket.gethostname()
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    assert attrs["HostConfig"]["IpcMode"] == "host"
    # ...the vllm-cpu entry point, and the API key in its environment only.
    argv = [attrs["Path"], *attrs["Args"]]
    assert "vllm.entrypoints.openai.api_server" in argv
    assert secret not in " ".join(argv)
    assert f"VLLM_API_KEY={secret}" in attrs["Config"]["Env"]
    # The built-in model is mounted read-only at its host path.
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    model_dir = argv[argv.index("--model") + 1]
    assert mounts[model_dir]["Source"] == model_dir and mounts[model_dir]["RW"] is False

    # The container's output reached the log file, without the key.
    logs = list((tmp_path / "results").rglob("server-*.log"))
    assert len(logs) == 1
    log = logs[0].read_text(errors="replace")
    assert "Application startup complete" in log
    assert secret not in log

    # Teardown removed the container; the stale one of the crashed run was reaped at startup.
    assert running_after == []
    with pytest.raises(Exception, match="No such container|404"):
        docker_client.containers.get(next(iter(watcher.seen)))
    with pytest.raises(Exception, match="No such container|404"):
        stale.reload()


def test_reaper_removes_only_containers_whose_owner_is_gone(docker_client, cpu_image):
    here = socket.gethostname()
    orphan = start_labelled(docker_client, cpu_image, containers.Owner(here, dead_pid(), "1.00"), "a")
    reused_pid = start_labelled(docker_client, cpu_image, containers.Owner(here, os.getpid(), "1.00"), "b")
    alive = start_labelled(docker_client, cpu_image, containers.Owner.of(os.getpid()), "c")
    elsewhere = start_labelled(docker_client, cpu_image, containers.Owner("another-host", dead_pid(), "1.00"), "d")
    try:
        reaped = containers.reap_stale(docker_client)
        assert set(reaped) >= {orphan.name, reused_pid.name}
        assert alive.name not in reaped and elsewhere.name not in reaped
        remaining = {c.id for c in docker_client.containers.list(all=True)}
        assert orphan.id not in remaining and reused_pid.id not in remaining
        assert alive.id in remaining and elsewhere.id in remaining
    finally:
        for container in (orphan, reused_pid, alive, elsewhere):
            containers.remove(docker_client, container.id)


def test_sigkilled_pytest_leaves_no_container(pytester, inner_args, docker_client, cpu_image):
    pytester.makepyfile(USES_SERVER)
    proc = popen_pytest(pytester, *inner_args, f"--vllm-docker={cpu_image}")

    def its_containers():  # sparse: one list call, no inspect of a container the reaper may remove meanwhile
        return docker_client.containers.list(
            all=True, sparse=True, filters={"label": f"{containers.LABEL_OWNER_PID}={proc.pid}"}
        )

    try:
        started = wait_until(its_containers, timeout=60, interval=0.05)  # kill as early as possible
        assert started, "the inner run never started a container"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        gone = wait_until(lambda: not its_containers(), timeout=30)
        assert gone, f"containers outlived their SIGKILLed pytest: {[c.id[:12] for c in its_containers()]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for container in its_containers():
            containers.remove(docker_client, container.id)


def tiny_saved_image(client, tag: str) -> bytes:
    """A one-file image, imported and then saved, as `docker save IMAGE | gzip` writes it."""
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as archive:
        data = b"tiny\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    repository, version = tag.split(":")
    client.api.import_image_from_data(payload.getvalue(), repository=repository, tag=version)
    saved = b"".join(client.images.get(tag).save(named=True))
    client.images.remove(tag, force=True)
    return gzip.compress(saved, compresslevel=1)


def test_saved_tarball_is_loaded_once(docker_client, tmp_path, monkeypatch):
    import docker

    tag = f"pytest-vllm-serve/test-tiny:{os.getpid()}"
    path = tmp_path / "tiny.tar.gz"
    path.write_bytes(tiny_saved_image(docker_client, tag))
    try:
        assert tarball_tag(path) == tag
        loaded = ensure_image(docker_client, str(path))
        assert tag in loaded.tags

        def no_second_load(*args, **kwargs):
            raise AssertionError("the image was loaded again although its tag was present")

        monkeypatch.setattr(docker.models.images.ImageCollection, "load", no_second_load)
        again = ensure_image(docker_client, str(path))  # present now: found by its tag
        assert again.id == loaded.id
    finally:
        docker_client.images.remove(tag, force=True)


# -- bad input: a clear error within seconds ---------------------------------------


def bad_tarball(tmp_path: Path) -> str:
    path = tmp_path / "not-an-image.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("notes.txt")
        archive.addfile(info, io.BytesIO(b""))
    return str(path)


BAD_INPUTS = {
    "image that does not exist": (
        lambda tmp: ["--vllm-docker=pytest-vllm-serve/no-such-image:0"],
        [
            "image 'pytest-vllm-serve/no-such-image:0' is not on this Docker engine and could not be pulled",
            "fix: build or load it first",
        ],
    ),
    "tarball that is not a saved image": (
        lambda tmp: [f"--vllm-docker={bad_tarball(tmp)}"],
        ["is not a saved Docker image: it has no manifest.json", "fix: create it with `docker save"],
    ),
    "tarball that does not exist": (
        lambda tmp: [f"--vllm-docker={tmp / 'missing.tar.gz'}"],
        ["looks like a saved image tarball, but there is no such file", "fix:"],
    ),
    "GPU image on an engine without the nvidia runtime": (
        lambda tmp: ["--vllm-docker={image}", "--vllm-docker-flavor=gpu"],
        ["is a GPU vLLM image, but the Docker engine has no nvidia runtime", "fix: install the NVIDIA Container"],
    ),
    "bad container mount": (
        lambda tmp: ["--vllm-docker={image}", f"--vllm-container-mount={tmp}/nope:/x"],
        ["the host path", "does not exist", "fix: create it"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_fast(case, pytester, inner_args, docker_client, cpu_image, tmp_path):
    make_args, expected = BAD_INPUTS[case]
    args = [a.replace("{image}", cpu_image) for a in make_args(tmp_path)]
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, *args)
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    for fragment in expected:
        assert fragment in text, text[-3000:]
    assert seconds < 30
