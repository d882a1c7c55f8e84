"""What a user imports from the package's top: every name in __all__ resolves, and the
benchmark half is loaded only when one of its names is used."""

from __future__ import annotations

import subprocess
import sys

import pytest_vllm_serve


def test_every_public_name_resolves():
    for name in pytest_vllm_serve.__all__:
        assert getattr(pytest_vllm_serve, name) is not None, name


def test_an_unknown_name_is_an_attribute_error():
    try:
        pytest_vllm_serve.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_importing_the_package_leaves_the_benchmark_half_unloaded():
    code = (
        "import sys, pytest_vllm_serve;"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_vllm_serve.bench')));"
        "from pytest_vllm_serve import RandomWorkload, Schedule;"
        "print('pytest_vllm_serve.bench.workloads' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True"]
