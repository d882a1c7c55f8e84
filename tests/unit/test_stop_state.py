"""A server kept in the registry is stopped from its state file alone, whichever launcher
started it, with no launcher module having been imported first."""

from __future__ import annotations

import pytest

from pytest_vllm_serve.serving import registry
from pytest_vllm_serve.serving.launchers.docker import process as docker
from pytest_vllm_serve.serving.launchers.slurm import job as slurm


def state(launcher: str, **ids) -> registry.ServerState:
    return registry.ServerState(
        key="k", url="http://127.0.0.1:1", model="m", launcher=launcher, pid=None, pgid=None, ids=ids
    )


@pytest.mark.parametrize(
    ("launcher", "module", "function"), [("docker", docker, "stop_container"), ("slurm", slurm, "stop_job")]
)
def test_each_launcher_has_its_stopper(monkeypatch, launcher, module, function):
    called = []
    monkeypatch.setattr(module, function, lambda ids: called.append(ids))
    registry.stop_state(state(launcher, job=7))
    assert called == [{"job": 7}]


def test_an_unknown_launcher_is_an_error():
    with pytest.raises(RuntimeError, match="cannot stop a 'mystery' server"):
        registry.stop_state(state("mystery"))
