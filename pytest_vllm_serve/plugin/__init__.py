"""The pytest plugin (the ``pytest11`` entry point): its hooks and fixtures, gathered here
from the modules that define them.

- ``configure``: options, early argument repair, the session's start and end;
- ``collection``: marker checks, grouping by server spec, sweep ids, the SLURM dry run;
- ``fixtures``: vllm_server, vllm_bench, vllm_slo_search, vllm_offline, vllm_profile and the rest;
- ``reporting``: server sections in test reports, plots, the end-of-session tables.

Hooks and fixtures only; the work lives in the session, serving and bench modules they call.
"""

from pytest_vllm_serve.plugin.collection import (
    point_id,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_generate_tests,
    pytest_generate_tests_repeats,
)
from pytest_vllm_serve.plugin.configure import (
    pytest_addoption,
    pytest_configure,
    pytest_configure_node,
    pytest_load_initial_conftests,
    pytest_report_header,
    pytest_unconfigure,
)
from pytest_vllm_serve.plugin.fixtures import (
    vllm_bench,
    vllm_bench_settings,
    vllm_offline,
    vllm_pool,
    vllm_profile,
    vllm_repeat,
    vllm_server,
    vllm_session,
    vllm_slo_search,
    vllm_spec,
)
from pytest_vllm_serve.plugin.keys import SESSION_KEY
from pytest_vllm_serve.plugin.reporting import (
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

__all__ = [
    "SESSION_KEY",
    "point_id",
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_generate_tests",
    "pytest_generate_tests_repeats",
    "pytest_load_initial_conftests",
    "pytest_report_header",
    "pytest_runtest_makereport",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
    "pytest_unconfigure",
    "vllm_bench",
    "vllm_bench_settings",
    "vllm_offline",
    "vllm_pool",
    "vllm_profile",
    "vllm_repeat",
    "vllm_server",
    "vllm_session",
    "vllm_slo_search",
    "vllm_spec",
]
