"""Startup overhead of the plugin over a hand-launched vLLM server, and the smoke suite's wall time.

    python benchmarks/startup_overhead.py --rounds 3

For each round, in alternating order:
  * plain:  the exact argv the plugin uses, started by hand with subprocess and
            polled every 0.1 s until /v1/models lists the model;
  * plugin: ``pytest_vllm_serve.serve()`` with the local launcher (model
            resolution, free port, reaper, readiness).
Then one ``pytest -m smoke`` run, split into server startup and the rest.
Prints a markdown table; the README quotes it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from pytest_vllm_serve.serving.launchers.local import LocalLauncher
from pytest_vllm_serve.serving.ports import free_port
from pytest_vllm_serve.serving.procs import terminate_tree
from pytest_vllm_serve.serving.server import serve
from pytest_vllm_serve.serving.spec import ServerSpec

ROOT = Path(__file__).resolve().parents[1]


def plugin_start(logs: Path) -> tuple[float, list[str]]:
    start = time.perf_counter()
    with serve(ServerSpec(), LocalLauncher(logs_dir=logs)) as server:
        elapsed = time.perf_counter() - start
        command = list(server.command)
    return elapsed, command


def plain_start(command: list[str], logs: Path) -> float:
    port = free_port()
    argv = list(command)
    argv[argv.index("--port") + 1] = str(port)
    start = time.perf_counter()
    with open(logs / f"plain-{port}.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1/models"
    try:
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"plain server exited with {proc.returncode}")
            time.sleep(0.1)
    finally:
        terminate_tree(proc.pid, pgid=proc.pid)


def smoke_run(results: Path) -> tuple[float, float, str]:
    start = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "smoke",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--vllm-results-dir={results}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    startup = float(re.search(r"startup ([\d.]+) s", out.stdout).group(1))
    launches = re.search(r"server launches this session: (\d+)", out.stdout).group(1)
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-3000:])
    return wall, startup, launches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    plugin_times, plain_times = [], []
    command: list[str] = []
    for i in range(args.rounds):
        # Alternate the order so neither side always runs on a warmer machine.
        order = ["plugin", "plain"] if i % 2 == 0 else ["plain", "plugin"]
        if not command:
            _, command = plugin_start(logs)  # learn the exact argv (and warm the model cache)
        for side in order:
            if side == "plugin":
                plugin_times.append(plugin_start(logs)[0])
            else:
                plain_times.append(plain_start(command, logs))
        print(f"round {i + 1}: plugin {plugin_times[-1]:.2f} s, plain {plain_times[-1]:.2f} s", file=sys.stderr)
    wall, startup, launches = smoke_run(logs / "smoke")
    med_plugin, med_plain = statistics.median(plugin_times), statistics.median(plain_times)
    print("| measure | value |")
    print("|---|---|")
    print(f"| plain api_server to ready, median of {args.rounds} | {med_plain:.2f} s |")
    print(f"| plugin serve() to ready, median of {args.rounds} | {med_plugin:.2f} s |")
    print(f"| plugin overhead (median difference) | {med_plugin - med_plain:+.2f} s |")
    print(f"| `pytest -m smoke` wall time | {wall:.1f} s |")
    print(f"| of which server startup | {startup:.1f} s |")
    print(f"| of which tests, teardown and pytest itself | {wall - startup:.1f} s |")
    print(f"| server launches in the smoke session | {launches} |")


if __name__ == "__main__":
    main()
