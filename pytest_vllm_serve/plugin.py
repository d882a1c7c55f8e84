"""The pytest plugin: options, markers, fixtures, collection order, reports.

Hooks only; the work lives in the modules they call.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from pytest_vllm_serve import config as options
from pytest_vllm_serve.errors import ConfigError, VllmServeError
from pytest_vllm_serve.serving.running import RunningServer
from pytest_vllm_serve.serving.spec import ServerSpec
from pytest_vllm_serve.session import MARKER, VllmSession, new_session_dir

SESSION_KEY = pytest.StashKey[VllmSession]()
SERVER_KEY = pytest.StashKey[RunningServer]()
PROFILE_KEY = pytest.StashKey[list]()  # profiling artifacts of a test, for its report


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


REJOINED_KEY = pytest.StashKey[str | None]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]):
    """Before any conftest is read: give back option values pytest took for test paths
    (see cmdline.py), and add the shipped suites that --vllm-suite names.

    The outermost wrapper, so this runs before pytest's capture plugin takes over the
    terminal's file descriptors (a restarted run must write to the real ones)."""
    from pytest_vllm_serve import cmdline

    problem = cmdline.restart_joined(
        early_config.invocation_params.args,
        (*options.VALUE_OPTIONS, *cmdline.BENCHMARK_VALUE_OPTIONS),
        early_config.invocation_params.dir,
    )
    if problem:
        raise pytest.UsageError(problem)
    early_config.stash[REJOINED_KEY] = cmdline.rejoined_note()
    known = parser.parse_known_args(args)
    for opt in options.OPTIONS:
        if getattr(known, opt.dest, None) == options.NO_VALUE:
            raise pytest.UsageError(cmdline.missing_value_fix(f"--{opt.name}", args))
    suite = known.vllm_suite or early_config.getini("vllm_suite")
    if suite:
        try:
            args.extend(str(path) for path in options.suite_paths(suite))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    return (yield)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [config.stash.get(REJOINED_KEY, None)]
    session = config.stash.get(SESSION_KEY, None)
    if session is not None and session.baseline is not None:
        lines.append(session.baseline.note())
    return [line for line in lines if line]


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


def _never_world_writable() -> None:
    """Keep the user's umask, but always mask world-write: every file the session and the
    servers it starts create (results, logs, traces) follows the umask, never o+w."""
    mask = os.umask(0)
    os.umask(mask | 0o002)


def pytest_configure(config: pytest.Config) -> None:
    _never_world_writable()
    config.addinivalue_line("markers", "smoke: the smoke suite: endpoint checks against a vLLM server")
    config.addinivalue_line("markers", "benchmark: serving benchmarks (sweeps) against a vLLM server")
    config.addinivalue_line(
        "markers",
        "vllm(model=None, tp=1, pp=1, dp=1, ep=False, backend=None, args=[], env={}, served_model_name=None): "
        "the vLLM server this test needs; tests with equal settings share one server",
    )
    try:
        settings = options.Settings.from_config(config)
        bench = options.bench_settings(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    workerinput = getattr(config, "workerinput", None)
    if workerinput and "vllm_session_dir" in workerinput:
        from pathlib import Path

        results_dir = Path(workerinput["vllm_session_dir"])
    else:
        try:
            results_dir = new_session_dir(settings.results_root)
        except OSError as exc:
            raise pytest.UsageError(
                f"--vllm-results-dir {settings.results_root} cannot be used: {exc.strerror or exc} "
                f"({getattr(exc, 'filename', None) or settings.results_root}).\n"
                "  fix: give a writable directory with free space, e.g. --vllm-results-dir /tmp/vllm-results"
            ) from None
    try:
        session = VllmSession(config=config, settings=settings, results_dir=results_dir, bench=bench)
        session.check_profiling()
    except ConfigError as exc:  # e.g. a --vllm-baseline that is not a results file, no nsys
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION_KEY] = session
    # SIGTERM (e.g. from a CI runner) unwinds like Ctrl-C, so teardown still runs.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # pytest-xdist: workers share the session dir and servers
    session = node.config.stash.get(SESSION_KEY, None)
    if session is not None:
        node.workerinput["vllm_session_dir"] = str(session.results_dir)
        node.workerinput["vllm_controller_pid"] = os.getpid()


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.pool.close()
        session.stop_shared_servers()  # the xdist controller, after every worker has finished


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    vsession = config.stash[SESSION_KEY]
    problems = []
    keyed: dict[int, str] = {}
    for index, item in enumerate(items):
        names = getattr(item, "fixturenames", ())
        uses_server = "vllm_server" in names or "vllm_offline" in names
        has_marker = item.get_closest_marker(MARKER) is not None
        if has_marker and not uses_server:
            problems.append(
                f"{item.nodeid}: has @pytest.mark.vllm but uses neither the vllm_server nor the vllm_offline fixture, "
                "so the marker would do nothing.\n  fix: add the vllm_server argument, or remove the marker"
            )
            continue
        if uses_server:
            try:
                keyed[index] = vsession.spec_for(item).key()
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise pytest.UsageError("\n".join(problems))
    # Group tests by spec so each server starts once; groups keep first-seen order.
    group_rank: dict[str, int] = {}
    for key in keyed.values():
        group_rank.setdefault(key, len(group_rank))
    order = sorted(range(len(items)), key=lambda i: (i in keyed, group_rank.get(keyed.get(i, ""), -1), i))
    items[:] = [items[i] for i in order]


SWEEPS = {
    "vllm_rate": ("sweep_rate", "rate"),
    "vllm_concurrency": ("sweep_concurrency", "concurrency"),
    "vllm_input_len": ("sweep_input_len", "input_len"),
    "vllm_output_len": ("sweep_output_len", "output_len"),
}


def _point_id(name: str, value: float) -> str:
    text = "inf" if value == float("inf") else (str(int(value)) if float(value).is_integer() else str(value))
    return f"{name}={text}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Sweep fixtures (vllm_rate, vllm_concurrency, vllm_input_len, vllm_output_len): one test id per point."""
    session = metafunc.config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    for fixture, (field, name) in SWEEPS.items():
        if fixture in metafunc.fixturenames:
            values = list(getattr(session.bench, field))
            metafunc.parametrize(fixture, values, ids=[_point_id(name, v) for v in values])


def _progress_writer(config: pytest.Config):
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return None

    def write(line: str) -> None:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    return write


def pytest_collection_finish(session: pytest.Session) -> None:
    vsession = session.config.stash.get(SESSION_KEY, None)
    if vsession is None or not vsession.settings.slurm_dry_run:
        return
    from pytest_vllm_serve.dryrun import dry_run

    try:
        specs = [
            vsession.spec_for(item) for item in session.items if "vllm_server" in getattr(item, "fixturenames", ())
        ]
        launcher = vsession.launcher()  # checks no SLURM command in a dry run
        text = dry_run(specs, launcher, vsession.settings.cache_dir)
    except VllmServeError as exc:
        raise pytest.UsageError(str(exc)) from None
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(text)
    pytest.exit("--vllm-slurm-dry-run: nothing was submitted", returncode=pytest.ExitCode.OK)


SUITES_MODULE = "pytest_vllm_serve.suites."


def point_id(item: pytest.Item) -> str:
    """The id a test's results are stored and gated under: its node id, except that a test of the
    shipped suites gets the same id wherever it was collected from (an installed package, --pyargs,
    --vllm-suite or this repository's tests/), so a baseline matches across machines and layouts."""
    module = getattr(getattr(item, "function", None), "__module__", "") or ""
    if module.startswith(SUITES_MODULE):
        return f"{module.replace('.', '/')}.py::{item.name}"
    return item.nodeid


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
def vllm_bench(request: pytest.FixtureRequest, vllm_server: RunningServer, vllm_session: VllmSession):
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
        progress_writer=_progress_writer(request.config),
        on_point=vllm_session.points.append,
        hooks=_profiling_hooks(request, vllm_server, vllm_session),
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
    if session.profiling:
        trace_dir = None if server.launcher == "external" else session.server_trace_dir
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
        progress_writer=_progress_writer(request.config),
        on_point=vllm_session.points.append,
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
        trace_dir = None if vllm_server.launcher == "external" else vllm_session.server_trace_dir
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    files = item.stash.get(PROFILE_KEY, None)
    if files and report.when == "call":
        from pytest_vllm_serve.bench.profiling import PERFETTO_HINT

        report.sections.append(("vllm profile", "\n".join([*map(str, files), PERFETTO_HINT])))
    server = item.stash.get(SERVER_KEY, None)
    if server is not None and report.when == "call":
        report.sections.append(("vllm server", server.report_text()))
        died = server.death() if report.failed else None
        if died:
            from pytest_vllm_serve.errors import format_log_tail

            tail = server.process.log_tail() if server.process else []
            report.sections.append(("vllm server died", f"{died}\n{format_log_tail(tail, str(server.log_path))}"))
        props = [("vllm_spec", server.spec.describe())]
        if server.command:
            from shlex import join

            from pytest_vllm_serve.redact import redact_argv

            props.append(("vllm_command", join(redact_argv(server.command))))
        props += [(f"vllm_{key}", value) for key, value in server.ids.items()]  # pid, SLURM job id...
        report.user_properties.extend(props)
        item.user_properties.extend(props)  # junitxml writes the teardown report's properties
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    vsession = session.config.stash.get(SESSION_KEY, None)
    if vsession is None or hasattr(session.config, "workerinput"):
        return  # xdist workers leave the plots to the controller
    if vsession.bench.plots and any(vsession.store.points_dir.glob("*.json")):
        from pytest_vllm_serve.bench.sinks.plots import draw_suite_plots

        vsession.plot_files = draw_suite_plots(vsession.store)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    points = session.store.load_points() if session.store.points_dir.exists() else []
    if points:
        from pytest_vllm_serve.bench.sinks.summary import points_table

        terminalreporter.section("vllm benchmark results")
        for line in points_table(points):
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"summary: {session.store.root / 'summary.csv'}")
        for plot in getattr(session, "plot_files", []):
            terminalreporter.write_line(f"plot: {plot}")
    shared = session.worker_id is None and session.shared_registry_dir.exists()
    if not (session.launched or session.attached or shared):
        return
    terminalreporter.section("vllm servers")
    if shared:  # xdist: the workers launched and attached; the registry counts the launches
        from pytest_vllm_serve.serving.registry import ServerRegistry

        registry = ServerRegistry(session.shared_registry_dir)
        terminalreporter.write_line(
            f"server launches this session: {registry.launches()} (shared by the xdist workers)"
        )
        for state in registry.states():
            terminalreporter.write_line(
                f"  {state.url}: {state.spec} (started by {state.started_by}, log {state.log_path})"
            )
    else:
        terminalreporter.write_line(f"server launches this session: {session.launched}, attached: {session.attached}")
    for server in session.pool.history:
        if server.launcher == "external" or server.startup_seconds is None:
            terminalreporter.write_line(f"  {server.url}: attached, serving {server.model} (log {server.log_path})")
        else:
            terminalreporter.write_line(
                f"  {server.spec.short_name}: {server.url} (startup {server.startup_seconds:.1f} s, log {server.log_path})"
            )
    terminalreporter.write_line(f"results: {session.results_dir}")
