"""The command line of ``python -m pytest_vllm_serve.report`` (see the package's docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_vllm_serve.bench.metrics import DEFAULT_CONFIDENCE
from pytest_vllm_serve.bench.sinks.report import (
    compare_markdown,
    compare_runs,
    load_run,
    render_compare,
    write_session_report,
)
from pytest_vllm_serve.bench.sinks.report.compare import DEFAULT_THRESHOLDS
from pytest_vllm_serve.errors import VllmServeError
from pytest_vllm_serve.files import atomic_write_text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_vllm_serve.report",
        description="Rebuild a session's report.html, or compare two runs of the same tests.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="(re)write report.html in a session's results directory")
    build.add_argument("results", type=Path, help="a session's results directory (vllm-results/<session>)")
    build.add_argument("-o", "--output", type=Path, help="where to write the page (default: RESULTS/report.html)")
    compare = sub.add_parser(
        "compare",
        help="compare two runs point by point: what regressed, improved or is undecided",
        description="Points are matched by their pytest node id. With repeats on either side the verdict is "
        "the regression gate's noise-aware one; with single runs it is the threshold check.",
    )
    compare.add_argument("old", type=Path, help="the earlier run: a results directory or its summary.json")
    compare.add_argument("new", type=Path, help="the later run: a results directory or its summary.json")
    compare.add_argument("-o", "--output", type=Path, help="write the page here (default: standard output)")
    compare.add_argument(
        "--format", choices=("html", "md"), default="html", help="an HTML page (default) or a Markdown table"
    )
    compare.add_argument(
        "--fail-on",
        default=DEFAULT_THRESHOLDS,
        metavar="THRESHOLDS",
        help=f"what counts as a regression, in --vllm-fail-on's syntax (default: {DEFAULT_THRESHOLDS})",
    )
    compare.add_argument(
        "--confidence",
        type=float,
        default=DEFAULT_CONFIDENCE,
        help=f"confidence of the intervals over repeats (default {DEFAULT_CONFIDENCE})",
    )
    compare.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when a point regressed (for CI jobs that gate on the comparison)",
    )
    return parser


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(output, text)
        print(f"wrote {output}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            run = load_run(args.results)
            path = write_session_report(run, args.output)
            print(f"wrote {path} ({len(run.points)} points)", file=sys.stderr)
            return 0
        comparison = compare_runs(
            load_run(args.old, what="OLD"), load_run(args.new, what="NEW"), args.fail_on, args.confidence
        )
    except VllmServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = compare_markdown(comparison) if args.format == "md" else render_compare(comparison)
    _emit(text, args.output)
    regressed = comparison.by_outcome("regressed")
    print(
        f"{len(regressed)} regressed, {len(comparison.by_outcome('undecided'))} undecided, "
        f"{len(comparison.by_outcome('improved'))} improved, {len(comparison.by_outcome('unchanged'))} unchanged",
        file=sys.stderr,
    )
    return 1 if args.exit_code and regressed else 0


if __name__ == "__main__":
    sys.exit(main())
