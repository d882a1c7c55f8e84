"""Profiling: the server's torch profiler, Nsight Systems around ``vllm serve``,
and VizTracer around the client.

* Torch profiler: the server is started with a profiler configuration
  (``--profiler-config`` JSON since vLLM 0.13; the ``VLLM_TORCH_PROFILER_DIR``
  variable that earlier versions read). Around the measured phase of a
  benchmark point the plugin POSTs ``/start_profile`` and ``/stop_profile``,
  then moves the new trace files into ``profiles/<test id>/``. A server that
  refuses (it was started without profiling) fails the test with that reason.
* nsys: ``nsys profile`` with the reference trace options wraps the serve
  command; on teardown nsys gets SIGINT and a bounded wait to finalise.
* VizTracer: traces the client process during the measured phase.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pytest_vllm_serve.bench.sinks.results import safe_name
from pytest_vllm_serve.errors import ConfigError, VllmServeError

#: vLLM versions from this one on take --profiler-config; earlier ones read env vars.
PROFILER_CONFIG_SINCE = (0, 13)
PERFETTO_HINT = "open .json/.json.gz traces at https://ui.perfetto.dev (it reads .gz directly)"


class ProfileError(VllmServeError):
    """The server could not be profiled."""


def _version(text: str | None) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def profiler_serve_config(
    vllm_version: str | None, trace_dir: Path, user_config: str | None = None, profiler: str = "torch"
) -> tuple[list[str], dict[str, str]]:
    """The serve args and environment that enable the profiler (``(args, env)``)."""
    if user_config is not None:
        try:
            json.loads(user_config)
        except ValueError as exc:
            raise ConfigError(
                f"--vllm-profiler-config is not valid JSON ({exc}).\n"
                '  fix: e.g. --vllm-profiler-config \'{"profiler": "torch", "torch_profiler_dir": "/tmp/traces"}\''
            ) from None
        return ["--profiler-config", user_config], {}
    version = _version(vllm_version)
    if version is not None and version < PROFILER_CONFIG_SINCE:
        return [], {"VLLM_TORCH_PROFILER_DIR": str(trace_dir)}
    config = {"profiler": profiler}
    if profiler == "torch":
        config["torch_profiler_dir"] = str(trace_dir)
    return ["--profiler-config", json.dumps(config)], {}


def check_trace_dir(path: Path) -> None:
    """Fail before the run if traces cannot be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"the trace directory {path} is not writable ({exc.strerror or exc}).\n"
            "  fix: choose a writable --vllm-results-dir"
        ) from None


def _snapshot(directory: Path | None) -> dict[Path, float]:
    if directory is None or not directory.exists():
        return {}
    return {p: p.stat().st_mtime for p in directory.rglob("*") if p.is_file()}


def _settle(directory: Path, before: dict[Path, float], timeout: float) -> list[Path]:
    """New or changed files, once their sizes stop changing (traces are written after stop)."""
    deadline = time.monotonic() + timeout
    last: dict[Path, int] = {}
    stable_since = time.monotonic()
    while True:
        now = {p: p.stat().st_size for p, m in _snapshot(directory).items() if before.get(p) != m}
        if now != last:
            last, stable_since = now, time.monotonic()
        elif now and time.monotonic() - stable_since >= 1.0:
            return sorted(now)
        if time.monotonic() > deadline:
            return sorted(now)
        time.sleep(0.2)


@dataclass
class ServerProfiler:
    """Drives one server's profiler over HTTP and gathers its traces."""

    client: httpx.Client
    url: str
    trace_dir: Path | None  # where the server writes traces; None when it is not ours (--vllm-url)
    settle_timeout: float = 120.0
    _before: dict[Path, float] = field(default_factory=dict, init=False)

    def start(self) -> None:
        self._before = _snapshot(self.trace_dir)
        self._post("/start_profile")

    def stop(self, dest: Path) -> list[Path]:
        """Stop profiling and move the new traces into ``dest``. Returns them."""
        self._post("/stop_profile")
        if self.trace_dir is None:
            return []
        dest.mkdir(parents=True, exist_ok=True)
        moved = []
        for path in _settle(self.trace_dir, self._before, self.settle_timeout):
            target = dest / path.name
            shutil.move(str(path), target)
            moved.append(target)
        return moved

    def _post(self, path: str) -> None:
        try:
            response = self.client.post(path, timeout=600)
        except httpx.HTTPError as exc:
            raise ProfileError(f"POST {self.url}{path} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            body = response.text[:300].strip()
            raise ProfileError(
                f"the server at {self.url} refused {path} with {response.status_code} ({body or 'no body'}): "
                "it was not started with profiling enabled.\n"
                "  fix: with a launched server, pass --vllm-profile (the plugin then starts it with "
                "--profiler-config); with --vllm-url, start that server with "
                '--profiler-config \'{"profiler": "torch", "torch_profiler_dir": "DIR"}\''
            )


def test_profile_dir(results_dir: Path, node_id: str) -> Path:
    """Where a test's profiling artifacts go: one folder per test id."""
    return results_dir / "profiles" / safe_name(node_id)


@dataclass
class ClientTracer:
    """VizTracer around the client's measured phase."""

    output: Path
    _tracer: object | None = field(default=None, init=False)

    @staticmethod
    def check_installed() -> None:
        try:
            import viztracer  # noqa: F401
        except ImportError:
            raise ConfigError("--vllm-viztracer needs VizTracer.\n  fix: pip install viztracer") from None

    def start(self) -> None:
        from viztracer import VizTracer

        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._tracer = VizTracer(output_file=str(self.output), verbose=0)
        self._tracer.start()

    def stop(self) -> Path:
        self._tracer.stop()
        self._tracer.save()
        return self.output


# -- around a benchmark point's measured phase (VllmBench's hooks) -------------------------------


@dataclass
class ServerProfileHook:
    """The server's torch or CUDA profiler, from just before the measured phase to its end."""

    profiler: ServerProfiler
    dest: Path  # the test's profiles folder
    files: list[Path]  # the trace files land here
    in_process: bool = False

    def before_measure(self) -> None:
        self.profiler.start()

    def after_measure(self) -> None:
        self.files.extend(self.profiler.stop(self.dest))


@dataclass
class ClientTraceHook:
    """VizTracer over the load generator during the measured phase."""

    tracer: ClientTracer
    files: list[Path]
    in_process: bool = True  # the traced client must run in this process

    def before_measure(self) -> None:
        self.tracer.start()

    def after_measure(self) -> None:
        self.files.append(self.tracer.stop())
