"""Servers kept across sessions by ``--vllm-reuse``: list or stop them.

python -m pytest_vllm_serve.tools.servers list [--results-dir vllm-results]
python -m pytest_vllm_serve.tools.servers stop [--results-dir vllm-results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_vllm_serve.serving.registry import ServerRegistry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_vllm_serve.tools.servers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["list", "stop"])
    parser.add_argument(
        "--results-dir", default="vllm-results", help="the --vllm-results-dir of the sessions (default: vllm-results)"
    )
    args = parser.parse_args(argv)
    registry_dir = Path(args.results_dir) / "reusable-servers"
    if not registry_dir.exists():
        print(f"no reusable servers under {registry_dir}")
        return 0
    registry = ServerRegistry(registry_dir)
    if args.action == "list":
        states = registry.states()
        for state in states:
            print(f"{state.url}  pid {state.pid}  {state.spec}  log {state.log_path}")
        print(f"{len(states)} server(s)")
    else:
        for url in registry.stop_all():
            print(f"stopped {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
