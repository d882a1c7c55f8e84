"""The HTML report of a session and the comparison of two runs (docs/report.md).

* data.py: a results directory (or its summary.json) loaded as a ``Run``;
* figures.py: the curves as Plotly figures (pure);
* compare.py: two runs matched point by point, with the gate's decision (pure);
* render.py: the pages (Jinja2, templates/) and the comparison as Markdown.
"""

from pytest_vllm_serve.bench.sinks.report.compare import Comparison, compare_runs
from pytest_vllm_serve.bench.sinks.report.data import SESSION_JSON, ReportInputError, Run, load_run
from pytest_vllm_serve.bench.sinks.report.render import (
    REPORT_HTML,
    compare_markdown,
    render_compare,
    render_session,
    write_session_report,
)

__all__ = [
    "REPORT_HTML",
    "SESSION_JSON",
    "Comparison",
    "ReportInputError",
    "Run",
    "compare_markdown",
    "compare_runs",
    "load_run",
    "render_compare",
    "render_session",
    "write_session_report",
]
