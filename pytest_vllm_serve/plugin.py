"""The pytest plugin: options, markers, fixtures, collection order, reports.

Hooks only; the work lives in the modules they call.
"""

from __future__ import annotations

import signal
import threading
from typing import Iterator

import pytest

from . import options
from .errors import ConfigError, VllmServeError
from .launchers.base import RunningServer
from .session import MARKER, VllmSession, new_session_dir
from .spec import ServerSpec

SESSION_KEY = pytest.StashKey[VllmSession]()
SERVER_KEY = pytest.StashKey[RunningServer]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "smoke: the smoke suite: endpoint checks against a vLLM server")
    config.addinivalue_line("markers", "benchmark: serving benchmarks (sweeps) against a vLLM server")
    config.addinivalue_line(
        "markers",
        "vllm(model=None, tp=1, pp=1, dp=1, ep=False, backend=None, args=[], env={}, served_model_name=None): "
        "the vLLM server this test needs; tests with equal settings share one server",
    )
    try:
        settings = options.Settings.from_config(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    workerinput = getattr(config, "workerinput", None)
    if workerinput and "vllm_session_dir" in workerinput:
        from pathlib import Path

        results_dir = Path(workerinput["vllm_session_dir"])
    else:
        results_dir = new_session_dir(settings.results_root)
    config.stash[SESSION_KEY] = VllmSession(config=config, settings=settings, results_dir=results_dir)
    # SIGTERM (e.g. from a CI runner) unwinds like Ctrl-C, so teardown still runs.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # pytest-xdist: share the session dir with workers
    session = node.config.stash.get(SESSION_KEY, None)
    if session is not None:
        node.workerinput["vllm_session_dir"] = str(session.results_dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.pool.close()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    vsession = config.stash[SESSION_KEY]
    problems = []
    keyed: dict[int, str] = {}
    for index, item in enumerate(items):
        uses_server = "vllm_server" in getattr(item, "fixturenames", ())
        has_marker = item.get_closest_marker(MARKER) is not None
        if has_marker and not uses_server:
            problems.append(
                f"{item.nodeid}: has @pytest.mark.vllm but does not use the vllm_server fixture, "
                "so no server would be started for it.\n  fix: add the vllm_server argument, or remove the marker"
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    server = item.stash.get(SERVER_KEY, None)
    if server is not None and report.when == "call":
        report.sections.append(("vllm server", server.report_text()))
        report.user_properties.append(("vllm_spec", server.spec.describe()))
        if server.command:
            from shlex import join

            report.user_properties.append(("vllm_command", join(server.command)))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not (session.launched or session.attached):
        return
    terminalreporter.section("vllm servers")
    terminalreporter.write_line(f"server launches this session: {session.launched}, attached: {session.attached}")
    for server in session.pool.history:
        startup = f"{server.startup_seconds:.1f} s" if server.startup_seconds is not None else "attached"
        terminalreporter.write_line(f"  {server.spec.short_name}: {server.url} (startup {startup}, log {server.log_path})")
    terminalreporter.write_line(f"results: {session.results_dir}")
