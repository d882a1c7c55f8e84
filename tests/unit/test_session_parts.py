"""The composition root's parts, without servers: which launcher and owner the options choose,
what profiling adds to a launch, and what each pool does when an offline engine needs the devices."""

from __future__ import annotations

import os

import pytest

from pytest_vllm_serve.config import Settings
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.launchers.local import LocalLauncher
from pytest_vllm_serve.serving.pool import Pool, RegistryPool, ServerPool
from pytest_vllm_serve.serving.registry import ServerRegistry
from pytest_vllm_serve.serving.spec import ServerSpec
from pytest_vllm_serve.session.launchers import Launchers
from pytest_vllm_serve.session.profiling import LaunchAdditions, ProfilingWiring
from tests.support.pools import FakeStarts


def _launchers(tmp_path, **settings) -> Launchers:
    chosen = Settings(results_root=tmp_path, **settings)
    return Launchers(chosen, tmp_path / "session", ProfilingWiring(chosen, tmp_path / "session"))


def test_the_owner_is_explicit_this_process_or_nobody(tmp_path):
    launchers = _launchers(tmp_path)
    mine = launchers.for_owner(os.getpid())
    kept = launchers.for_owner(None)
    assert isinstance(mine, LocalLauncher) and isinstance(kept, LocalLauncher)
    assert mine.owner_pid == os.getpid()
    assert kept.owner_pid is None  # --vllm-reuse: nobody's death stops the server
    assert mine.logs_dir == tmp_path / "session" / "logs"


def test_without_profiling_a_launch_gets_nothing_added(tmp_path):
    wiring = ProfilingWiring(Settings(results_root=tmp_path), tmp_path)
    assert not wiring.enabled
    assert wiring.launch() == LaunchAdditions()
    assert wiring.launch(in_container=True, nsys_here=False) == LaunchAdditions()
    wiring.check()  # nothing to refuse


def test_torch_profiler_and_nsys_together_are_refused_up_front(tmp_path):
    wiring = ProfilingWiring(Settings(results_root=tmp_path, profile=True, nsys=True), tmp_path)
    with pytest.raises(ConfigError, match="cannot drive one server at once"):
        wiring.check()


def test_releasing_devices_stops_owned_servers_but_never_shared_ones(tmp_path):
    starts = FakeStarts()
    owned: Pool = ServerPool(start=starts)
    owned.acquire(ServerSpec.build(model="m", args=("a",)))
    owned.release_devices()
    assert starts.events == ["start a", "stop a"]
    assert owned.running() == []

    shared: Pool = RegistryPool(
        ServerRegistry(tmp_path / "servers"),
        start_detached=lambda spec: pytest.fail("nothing is started"),
        attach=lambda state, spec: pytest.fail("nothing is attached"),
    )
    shared.release_devices()  # the registry's owner stops them; this must not touch the registry
    assert shared.running() == []
