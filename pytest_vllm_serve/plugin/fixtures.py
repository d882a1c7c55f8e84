"""The plugin's fixtures: thin wrappers over the session, the server pool and the benchmark half."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_vllm_serve.bench.repeats import Repeat
from pytest_vllm_serve.errors import VllmServeError
from pytest_vllm_serve.plugin.collection import point_id
from pytest_vllm_serve.plugin.keys import PROFILE_KEY, SERVER_KEY, SESSION_KEY
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.spec import ServerSpec
from pytest_vllm_serve.session import VllmSession
from pytest_vllm_serve.session.terminal import terminal_writer


def _benchmark_fixture(request: pytest.FixtureRequest):
    """pytest-benchmark's fixture when that plugin is active (else None), tagged with the point id
    so that a --benchmark-json file works as a --vllm-baseline wherever the suite was collected from."""
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        return None
    benchmark.extra_info["point_id"] = point_id(request.node)
    return benchmark


@pytest.fixture(scope="session")
def vllm_session(request: pytest.FixtureRequest) -> VllmSession:
    """The session's settings, results directory and server pool."""
    return request.config.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def vllm_pool(vllm_session: VllmSession) -> Iterator:
    """Session-scoped server manager: one server per spec, stopped at session end."""
    yield vllm_session.pool
    vllm_session.pool.close()


@pytest.fixture
def vllm_spec(request: pytest.FixtureRequest, vllm_session: VllmSession) -> ServerSpec:
    """The ServerSpec for this test: its vllm marker over command line over ini over defaults."""
    return vllm_session.spec_for(request.node)


@pytest.fixture
def vllm_server(request: pytest.FixtureRequest, vllm_pool, vllm_spec: ServerSpec) -> RunningServer:
    """A ready vLLM server for this test's spec, shared with every test of the same spec.

    Has ``.url``, ``.model`` (the served name), ``.client`` (an httpx client with the
    API key), ``.log_path`` and ``.spec``.
    """
    try:
        server = vllm_pool.acquire(vllm_spec)
    except VllmServeError as exc:
        failure = str(exc)
    else:
        failure = None
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    request.node.stash[SERVER_KEY] = server
    return server


@pytest.fixture
def vllm_bench_settings(vllm_session: VllmSession):
    """The session's benchmark options (sweep grids, lengths, prompts, seed...)."""
    return vllm_session.bench


@pytest.fixture
def vllm_repeat(request: pytest.FixtureRequest, vllm_session: VllmSession) -> Repeat:
    """Which of its point's --vllm-repeats this test measures (1 of 1 without repeats)."""
    return Repeat(getattr(request, "param", 1), vllm_session.bench.repeats if hasattr(request, "param") else 1)


@pytest.fixture
def vllm_bench(
    request: pytest.FixtureRequest, vllm_server: RunningServer, vllm_session: VllmSession, vllm_repeat: Repeat
):
    """Measures one benchmark point against ``vllm_server``: ``vllm_bench.run(workload, schedule)``.

    Results go to the session's results dir at once, into pytest-benchmark's JSON
    (``extra_info`` plus the recorded latency series), and through ``--vllm-fail-on``.
    """
    from pytest_vllm_serve.bench.point import VllmBench

    benchmark = _benchmark_fixture(request)
    return VllmBench(
        server=vllm_server,
        settings=vllm_session.bench,
        store=vllm_session.store,
        node_id=point_id(request.node),
        benchmark=benchmark,
        baseline=vllm_session.baseline,
        progress_writer=terminal_writer(request.config),
        on_point=vllm_session.record_point,
        hooks=_profiling_hooks(request, vllm_server, vllm_session),
        repeat=vllm_repeat,
    )


@pytest.fixture
def vllm_slo_search(request: pytest.FixtureRequest, vllm_server: RunningServer, vllm_session: VllmSession):
    """Finds the highest request rate or max concurrency of ``vllm_server`` that meets --vllm-slo:
    ``vllm_slo_search.run(workload_for)``. Every probe is a benchmark point of its own
    (``<test>[rate=4]``); the answer goes to slo_search.json and pytest-benchmark's JSON."""
    from pytest_vllm_serve.bench.point import VllmBench
    from pytest_vllm_serve.bench.point.search import VllmSloSearch

    writer = terminal_writer(request.config)

    def probe_bench(probe_id: str, repeat: Repeat) -> VllmBench:
        return VllmBench(
            server=vllm_server,
            settings=vllm_session.bench,
            store=vllm_session.store,
            node_id=probe_id,
            progress_writer=writer,
            on_point=vllm_session.record_point,
            repeat=repeat,
        )

    return VllmSloSearch(
        settings=vllm_session.bench,
        node_id=point_id(request.node),
        new_bench=probe_bench,
        root=vllm_session.store.root,
        benchmark=_benchmark_fixture(request),
        baseline=vllm_session.baseline,
        progress_writer=writer,
    )


def _profiling_hooks(request: pytest.FixtureRequest, server: RunningServer, session: VllmSession) -> list:
    """The profilers the options ask for, around the point's measured phase; their trace
    files go to the test's profiles folder and its report."""
    from pytest_vllm_serve.bench.profiling import (
        ClientTraceHook,
        ClientTracer,
        ServerProfileHook,
        ServerProfiler,
        test_profile_dir,
    )

    files = request.node.stash.setdefault(PROFILE_KEY, [])
    dest = test_profile_dir(session.results_dir, point_id(request.node))
    hooks: list = []
    if session.profiling.enabled:
        trace_dir = None if server.launcher == "external" else session.profiling.server_trace_dir
        hooks.append(ServerProfileHook(ServerProfiler(server.client, server.url, trace_dir), dest, files))
    if session.settings.viztracer:
        hooks.append(ClientTraceHook(ClientTracer(dest / session.settings.viztracer), files))
    return hooks


@pytest.fixture
def vllm_offline(request: pytest.FixtureRequest, vllm_session: VllmSession, vllm_spec: ServerSpec):
    """Measures raw ``LLM.generate`` (no API server) for this test's spec: ``vllm_offline.run(...)``.

    Model and TP/PP/DP/EP come from the vllm marker and options, like a server's.
    Running servers of the session are stopped first, so the engine gets the devices.
    """
    from pytest_vllm_serve.bench.offline.point import OfflineBench
    from pytest_vllm_serve.serving.offline import offline_engine, run_engine

    benchmark = _benchmark_fixture(request)
    cache_dir = vllm_session.settings.cache_dir
    bench = OfflineBench(
        resolve_engine=lambda: offline_engine(vllm_spec, cache_dir),
        run_engine=run_engine,
        settings=vllm_session.bench,
        store=vllm_session.store,
        node_id=point_id(request.node),
        logs_dir=vllm_session.logs_dir,
        benchmark=benchmark,
        viztracer=vllm_session.settings.viztracer,
        before_run=vllm_session.free_devices,
        progress_writer=terminal_writer(request.config),
        on_point=vllm_session.record_point,
    )
    yield bench
    if bench.extra_files:
        request.node.stash.setdefault(PROFILE_KEY, []).extend(bench.extra_files)


@pytest.fixture
def vllm_profile(request: pytest.FixtureRequest, vllm_server: RunningServer, vllm_session: VllmSession):
    """Profile any block against ``vllm_server``: ``with vllm_profile() as traces: ...``.

    The server's profiler runs for the block; afterwards ``traces`` (a list) holds the
    trace files, moved into profiles/<test id>/. The server must have been started
    with profiling (--vllm-profile), else the test fails with the server's refusal.
    """
    from contextlib import contextmanager

    from pytest_vllm_serve.bench.profiling import ProfileError, ServerProfileHook, ServerProfiler, test_profile_dir

    @contextmanager
    def profile():
        trace_dir = None if vllm_server.launcher == "external" else vllm_session.profiling.server_trace_dir
        hook = ServerProfileHook(
            ServerProfiler(vllm_server.client, vllm_server.url, trace_dir),
            test_profile_dir(vllm_session.results_dir, point_id(request.node)),
            request.node.stash.setdefault(PROFILE_KEY, []),
        )
        traces: list = []
        try:
            hook.before_measure()
        except ProfileError as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield traces
        finally:
            before = len(hook.files)
            hook.after_measure()
            traces.extend(hook.files[before:])

    return profile
