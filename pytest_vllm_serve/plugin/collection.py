"""Collection: the marker checks, tests grouped by server spec, the sweep ids, the SLURM dry run,
the repeats' order, and the id a test's results are stored under."""

from __future__ import annotations

import pytest

from pytest_vllm_serve.bench import repeats
from pytest_vllm_serve.errors import ConfigError, VllmServeError
from pytest_vllm_serve.plugin.keys import SESSION_KEY
from pytest_vllm_serve.session import MARKER


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
    # Group tests by spec so each server starts once; groups keep first-seen order. Within a
    # group, the repeats of a point run interleaved (every point once, then again) or grouped.
    group_rank: dict[str, int] = {}
    for key in keyed.values():
        group_rank.setdefault(key, len(group_rank))
    within = _repeat_order(items, vsession.bench.repeat_order == "interleaved")
    order = sorted(range(len(items)), key=lambda i: (i in keyed, group_rank.get(keyed.get(i, ""), -1), within[i]))
    items[:] = [items[i] for i in order]
    if vsession.bench.repeats > 1 and config.pluginmanager.hasplugin("xdist"):
        for item in items:  # with --dist loadgroup, a point's repeats share one xdist worker
            if repeat_index(item) is not None:
                item.add_marker(pytest.mark.xdist_group(name=point_id(item)))


def repeat_index(item: pytest.Item) -> int | None:
    """Which repeat of its point a test is (--vllm-repeats), or None."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get(repeats.PARAM) if callspec is not None else None


def _repeat_order(items: list[pytest.Item], interleaved: bool) -> list[tuple[int, int]]:
    """A sort key per item: (repeat, first position of its point) interleaved, else the reverse."""
    first: dict[str, int] = {}
    keys = []
    for index, item in enumerate(items):
        repeat = repeat_index(item)
        if repeat is None:
            keys.append((0, index) if interleaved else (index, 0))
            continue
        position = first.setdefault(point_id(item), index)
        keys.append((repeat, position) if interleaved else (position, repeat))
    return keys


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


@pytest.hookimpl(specname="pytest_generate_tests", trylast=True)
def pytest_generate_tests_repeats(metafunc: pytest.Metafunc) -> None:
    """--vllm-repeats: each benchmark test once per repeat, the repeat last in its id (after the
    test's own parametrize marks and the sweeps, whose ids stay as they were)."""
    session = metafunc.config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    count = session.bench.repeats
    if count > 1 and "vllm_bench" in metafunc.fixturenames:
        indices = list(range(1, count + 1))
        ids = [repeats.Repeat(i, count).test_id() for i in indices]
        metafunc.parametrize(repeats.PARAM, indices, indirect=True, ids=ids)


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
        return repeats.without_repeat(f"{module.replace('.', '/')}.py::{item.name}")
    return repeats.without_repeat(item.nodeid)
