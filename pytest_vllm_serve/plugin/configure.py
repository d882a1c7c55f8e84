"""Start and end of the pytest session: options, early argument repair, the VllmSession, signals."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from pytest_vllm_serve import config as options
from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.plugin.keys import REJOINED_KEY, SESSION_KEY
from pytest_vllm_serve.session import VllmSession, new_session_dir


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


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
    if session is not None:
        lines.extend(session.bench.slo_warnings)
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
    session.start_results()
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
