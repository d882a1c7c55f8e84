"""No module over 400 lines and no function over 60, except those listed here with the reason.

A new long module or function fails this test: split it, or add it below with why. What is
listed is long by nature (a table, one record with a line per field, one self-contained tool);
never grow the lists quietly.
"""

from __future__ import annotations

import ast

from tests.support import ROOT

PACKAGE = ROOT / "pytest_vllm_serve"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

#: module (relative to the package) -> why it is long.
LONG_MODULES = {
    "config.py": "the option table: one Opt with its help text per option (about 350 lines of it)",
    "tools/latency_server.py": "a self-contained test server in one file, runnable with python -m",
}

#: "module:function" -> why it is long.
LONG_FUNCTIONS = {
    "bench/metrics/compute.py:compute_metrics": "one BenchmarkMetrics(...) call with a line per field",
    "bench/metrics/vllm_result.py:to_vllm_result": "one dict with a line per key of vLLM's result file",
    "tools/latency_server.py:stream": "one streamed answer with every fault mode of the test server",
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), path


def test_no_new_long_module():
    long = {rel: len(path.read_text().splitlines()) for rel, path in _modules()}
    new = {rel: n for rel, n in long.items() if n > MAX_MODULE_LINES and rel not in LONG_MODULES}
    assert not new, f"modules over {MAX_MODULE_LINES} lines: {new}; split them, or list them with the reason"
    stale = [rel for rel in LONG_MODULES if long.get(rel, 0) <= MAX_MODULE_LINES]
    assert not stale, f"no longer long (take them off LONG_MODULES): {stale}"


def test_no_new_long_function():
    found = {}
    for rel, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                key = f"{rel}:{node.name}"
                found[key] = max(found.get(key, 0), node.end_lineno - node.lineno + 1)
    new = {k: n for k, n in found.items() if n > MAX_FUNCTION_LINES and k not in LONG_FUNCTIONS}
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines: {new}; split them, or list them with the reason"
    stale = [k for k in LONG_FUNCTIONS if found.get(k, 0) <= MAX_FUNCTION_LINES]
    assert not stale, f"no longer long (take them off LONG_FUNCTIONS): {stale}"
