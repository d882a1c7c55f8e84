"""Where the client's CPU goes per request: a cProfile of one point, grouped by package.

    python benchmarks/profile_client.py [--n 2000] [--output-len 16] [--concurrency 128] [--top 15]

Runs the same client process as ``client_cpu.py`` (one point through the load generator, one
client process, every request at once under the cap) against the latency test server at zero
latency, under cProfile, and prints the profile's own time (tottime) summed per package
(aiohttp, httpx, asyncio, the plugin, the standard library's json, C built-ins) and the
functions that cost most. The whole process is profiled, imports included; at 2000 requests
the requests dominate. cProfile slows Python calls more than C calls, so read the shares, not
the seconds.
"""

from __future__ import annotations

import argparse
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

from pytest_vllm_serve.tools.latency_server import running

HERE = Path(__file__).resolve().parent

GROUPS = (
    ("httpx_aiohttp/", "httpx-aiohttp"),
    ("/aiohttp/", "aiohttp"),
    ("/httpx/", "httpx"),
    ("/asyncio/", "asyncio"),
    ("uvloop", "uvloop"),
    ("pytest_vllm_serve", "pytest-vllm-serve"),
    ("/json/", "json (standard library)"),
)


def group_of(filename: str) -> str:
    if filename == "~":
        return "C built-ins (sockets, msgspec, str, list)"
    for needle, name in GROUPS:
        if needle in filename:
            return name
    return "other (imports, importlib, site-packages)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--output-len", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running(ttft_ms=0, itl_ms=0) as url:
        out = Path(tmp) / "client.prof"
        child = [
            str(HERE / "client_cpu.py"),
            "ours-child",
            url,
            str(args.n),
            str(args.output_len),
            str(args.concurrency),
        ]
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), *child], check=True, capture_output=True)
        stats = pstats.Stats(str(out))
    total = sum(tt for (_, _, tt, _, _) in stats.stats.values())
    groups: dict[str, float] = {}
    for (filename, _, _), (_, _, tt, _, _) in stats.stats.items():
        groups[group_of(filename)] = groups.get(group_of(filename), 0.0) + tt
    print(f"{args.n} requests of {args.output_len} tokens, concurrency {args.concurrency}: {total:.2f} s profiled")
    print()
    print("| package | share of the client's time |")
    print("|---|---|")
    for name, tt in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"| {name} | {100 * tt / total:.1f} % |")
    print()
    print("| function | calls | share |")
    print("|---|---|---|")
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[: args.top]
    for (filename, line, function), (_, calls, tt, _, _) in rows:
        where = f"{Path(filename).name}:{line}" if filename != "~" else "built-in"
        print(f"| `{function}` ({where}) | {calls} | {100 * tt / total:.1f} % |")


if __name__ == "__main__":
    main()
