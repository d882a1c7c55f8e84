"""Bad input: each gets a clear error within seconds, naming the problem and the fix.

These fail before any server starts; the startup failures of a launched server are in
tests/integration/vllm/test_errors_against_servers.py.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from pytest_vllm_serve.serving.ports import free_port
from tests.support import DATA
from tests.support.inner_runs import USES_SERVER, output, run_timed


def test_model_path_that_does_not_exist(pytester, inner_args):
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-model=/nonexistent/models/llama")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = output(result)
    assert "'/nonexistent/models/llama' looks like a path, but it does not exist" in text
    assert "fix:" in text
    assert seconds < 15


def test_model_directory_without_config_json_fails_before_launch(pytester, inner_args, tmp_path):
    """A directory vLLM cannot load fails at collection, naming the missing file: no server starts."""
    model = tmp_path / "half-copied-model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"")
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, f"--vllm-model={model}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = output(result)
    assert f"the directory has no {model / 'config.json'}" in text, text
    assert "fix: pass the directory that holds the model's config.json" in text
    assert "starting ServerSpec" not in text  # nothing was launched
    assert seconds < 15


def test_unreachable_url(pytester, inner_args):
    pytester.makepyfile(USES_SERVER)
    url = f"http://127.0.0.1:{free_port()}"
    result, seconds = run_timed(pytester, *inner_args, f"--vllm-url={url}")
    result.assert_outcomes(errors=1)
    text = output(result)
    assert f"--vllm-url {url} is unreachable" in text
    assert "fix: check the host and port" in text
    assert seconds < 20


def test_unresolvable_host(pytester, inner_args):
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-url=http://no-such-host.invalid:8000")
    result.assert_outcomes(errors=1)
    assert "is unreachable" in output(result)
    assert seconds < 30


@pytest.fixture
def not_openai_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>hello, I am not a model server</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_that_is_not_an_openai_server(pytester, inner_args, not_openai_server):
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, f"--vllm-url={not_openai_server}")
    result.assert_outcomes(errors=1)
    text = output(result)
    assert "is not an OpenAI-compatible server" in text
    assert "not a model list" in text
    assert seconds < 20


def test_unknown_marker_keyword(pytester, inner_args):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vllm(tensor_parallel=2)
        def test_x(vllm_server):
            pass
        """
    )
    result, seconds = run_timed(pytester, *inner_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = output(result)
    assert "unknown @pytest.mark.vllm keyword(s) tensor_parallel" in text
    assert "fix: use only model, tp, pp, dp, ep" in text
    assert seconds < 15


def test_marker_on_a_test_that_does_not_use_the_server(pytester, inner_args):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.vllm(tp=1)
        def test_x():
            pass
        """
    )
    result, _ = run_timed(pytester, *inner_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "uses neither the vllm_server nor the vllm_offline fixture" in output(result)


def test_invalid_layout_from_the_command_line(pytester, inner_args):
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-pp=2", "--vllm-ep")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "PP and EP cannot be combined" in output(result)
    assert seconds < 15


def test_bad_startup_timeout_value(pytester, inner_args):
    pytester.makepyfile(USES_SERVER)
    result, _ = run_timed(pytester, *inner_args, "--vllm-startup-timeout=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--vllm-startup-timeout must be a number" in output(result)


# An excerpt of a real log: vLLM 0.26.0 on an H200, a 70B model at --gpu-memory-utilization 0.99.
GPU_OOM_LOG = (DATA / "logs" / "kv-cache-too-small.h200.log").read_text()


def test_the_root_cause_is_preferred_over_vllms_wrapper():
    from pytest_vllm_serve.errors import likely_cause

    cause = likely_cause(GPU_OOM_LOG.splitlines())
    assert cause.startswith("(EngineCore pid=3876) ValueError: To serve at least one request")


ONE_GPU = """
import pytest
from pytest_vllm_serve.serving.launchers.local import LocalLauncher

# A stand-in for a machine with one GPU (this one has none): the launcher reports one.
LocalLauncher.on_cpu = lambda self: False
LocalLauncher.visible_gpus = lambda self: 1
"""


def test_more_gpus_than_visible_fails_before_launch(pytester, inner_args):
    pytester.makeconftest(ONE_GPU)
    pytester.makepyfile(USES_SERVER)
    result, seconds = run_timed(pytester, *inner_args, "--vllm-tp=2")
    result.assert_outcomes(errors=1)
    text = output(result)
    assert "invalid parallel layout (TP must fit in one node): tp=2 but a node has 1 GPU(s)" in text
    assert "[vllm] starting" not in text
    assert "server launches this session" not in text  # nothing was launched
    assert seconds < 15
