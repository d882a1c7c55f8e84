"""What a test's report and the session's end show: server sections, plots, the results table."""

from __future__ import annotations

import pytest

from pytest_vllm_serve.plugin.keys import PROFILE_KEY, SERVER_KEY, SESSION_KEY


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
        from pytest_vllm_serve.bench.sinks.slo_plot import draw_search_plots

        vsession.plot_files = [*draw_suite_plots(vsession.store), *draw_search_plots(vsession.store.root)]
    vsession.finish_results()


def _slo_searches(terminalreporter, root) -> None:
    """The SLO searches' answers, when the session ran any (bench/sinks/slo_search.py)."""
    from pytest_vllm_serve.bench.sinks.slo_search import SLO_SEARCH_JSON, read_searches, search_table

    searches = read_searches(root)
    if not searches:
        return
    terminalreporter.section("vllm SLO search")
    for line in search_table(searches):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"slo search: {root / SLO_SEARCH_JSON}")


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
        for plot in session.plot_files:
            terminalreporter.write_line(f"plot: {plot}")
        if session.report_file is not None:
            terminalreporter.write_line(f"report: {session.report_file}")
    _slo_searches(terminalreporter, session.store.root)
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
        for gone in registry.replacements():
            terminalreporter.write_line(
                f"  replaced {gone['url']} (started by {gone['started_by']}): {gone['by']} found {gone['problem']}"
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
