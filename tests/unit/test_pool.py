"""The server pool's logic, without servers: one server per spec, bounded concurrency,
GPU slices, the registry, and collection grouped by spec. Sharing across xdist workers and
reuse across sessions, with real servers: tests/integration/vllm/test_pool_against_servers.py."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import ClassVar

import pytest

from pytest_vllm_serve.errors import ConfigError, ServerStartError
from pytest_vllm_serve.serving.hardware import VllmInstall
from pytest_vllm_serve.serving.launchers.local import LocalLauncher
from pytest_vllm_serve.serving.placement import GpuLedger
from pytest_vllm_serve.serving.pool import RegistryPool, ServerPool
from pytest_vllm_serve.serving.registry import ServerRegistry, ServerState
from pytest_vllm_serve.serving.spec import ServerSpec
from tests.support.pools import FakeStarts


def spec(name: str) -> ServerSpec:
    return ServerSpec(args=(name,))


def test_one_server_per_spec_and_the_previous_one_stops_first():
    starts = FakeStarts()
    pool = ServerPool(start=starts, max_servers=1)
    assert pool.acquire(spec("a")) is pool.acquire(spec("a"))
    pool.acquire(spec("b"))
    pool.close()
    assert starts.events == ["start a", "stop a", "start b", "stop b"]
    assert pool.launches == 2


def test_max_servers_keeps_several_and_evicts_the_least_recently_used():
    starts = FakeStarts()
    pool = ServerPool(start=starts, max_servers=2)
    pool.acquire(spec("a"))
    pool.acquire(spec("b"))
    pool.acquire(spec("a"))  # a is now the most recently used
    pool.acquire(spec("c"))
    assert starts.events == ["start a", "start b", "stop b", "start c"]
    pool.close()


def test_a_failed_spec_fails_fast_afterwards():
    starts = FakeStarts(fail={"bad"})
    pool = ServerPool(start=starts)
    for _ in range(2):
        with pytest.raises(ServerStartError, match="bad crashed"):
            pool.acquire(spec("bad"))
    assert starts.events == ["fail bad"]


def test_gpu_ledger_hands_out_disjoint_slices(tmp_path):
    ledger = GpuLedger(tmp_path / "ledger.json")
    visible = ["0", "1", "2", "3"]
    assert ledger.reserve("a", 2, visible) == ["0", "1"]
    assert ledger.reserve("b", 1, visible) == ["2"]
    with pytest.raises(ConfigError, match="needs 2 GPU\\(s\\) but only 1 of the 4 visible are free") as info:
        ledger.reserve("c", 2, visible)
    assert "--vllm-max-servers" in str(info.value)
    ledger.release("a")
    assert ledger.reserve("c", 2, visible) == ["0", "1"]


def test_gpu_ledger_frees_slices_of_dead_servers(tmp_path):
    ledger = GpuLedger(tmp_path / "ledger.json")
    ledger.reserve("gone", 2, ["0", "1"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ledger.bind("gone", dead.pid, "a server that exited")
    assert ledger.reserve("new", 2, ["0", "1"]) == ["0", "1"]


def test_local_launcher_places_concurrent_servers_on_their_own_gpus(tmp_path, monkeypatch):
    """GPU placement logic with a GPU list given by hand (this machine has no GPU)."""
    monkeypatch.setattr("pytest_vllm_serve.serving.launchers.local.has_cuda", lambda: True)
    launcher = LocalLauncher(
        logs_dir=tmp_path,
        install=VllmInstall("vllm", "0.26.0", sys.executable),
        gpu_ids=["0", "1", "2", "3"],
        gpu_ledger=GpuLedger(tmp_path / "ledger.json"),
    )
    layout = ServerSpec(tp=2).resolve(launcher.visible_gpus())
    first, second = launcher.place("a", layout), launcher.place("b", layout)
    assert first == ["0", "1"] and second == ["2", "3"]
    assert launcher.server_env(ServerSpec(tp=2), first)["CUDA_VISIBLE_DEVICES"] == "0,1"
    with pytest.raises(ConfigError, match="only 0 of the 4 visible are free"):
        launcher.place("c", layout)


def test_registry_drops_state_of_dead_servers(tmp_path):
    registry = ServerRegistry(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    registry.write(ServerState(key="k", url="http://x", model="m", launcher="local", pid=dead.pid, pgid=dead.pid))
    assert registry.read("k") is None
    assert not (tmp_path / "k.json").exists()
    registry.write(ServerState(key="live", url="http://y", model="m", launcher="local", pid=os.getpid(), pgid=None))
    assert registry.read("live").url == "http://y"
    assert "api_key" not in (tmp_path / "live.json").read_text()


def test_collection_is_grouped_by_spec(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vllm(args=["--max-num-seqs", "4"])
        def test_b1(vllm_server): pass
        def test_a1(vllm_server): pass
        def test_plain(): pass
        @pytest.mark.vllm(args=["--max-num-seqs", "4"])
        def test_b2(vllm_server): pass
        def test_a2(vllm_server): pass
        """
    )
    result = pytester.runpytest_subprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    names = [line.split("::")[-1] for line in result.stdout.lines if "::" in line]
    assert names == ["test_plain", "test_b1", "test_b2", "test_a1", "test_a2"]


class FlakyState(ServerState):
    """A shared server's state whose check answers the given problems in turn (then None)."""

    answers: ClassVar[list] = []

    def problem(self, api_key=None):
        return self.answers.pop(0) if self.answers else None


def test_a_shared_server_is_looked_at_again_before_it_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr("pytest_vllm_serve.serving.pool.time.sleep", lambda s: None)
    stopped = []
    monkeypatch.setattr("pytest_vllm_serve.serving.registry.stop_state", stopped.append)
    registry = ServerRegistry(tmp_path)
    pool = RegistryPool(registry, start_detached=None, attach=None, name="gw1")
    state = FlakyState(key="k", url="http://x", model="m", launcher="local", pid=os.getpid(), pgid=None)
    FlakyState.answers = ["/health did not answer within 3 s (ReadTimeout)"]  # a busy moment
    assert pool._usable(state) is state and stopped == [] and registry.replacements() == []
    FlakyState.answers = ["the engine process VLLM::EngineCore (pid 9) is gone"] * 3  # really gone
    assert pool._usable(state) is None and stopped == [state]
    (entry,) = registry.replacements()
    assert entry["by"] == "gw1" and entry["problem"] == "the engine process VLLM::EngineCore (pid 9) is gone"
